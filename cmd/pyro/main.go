// Command pyro runs disposable Linux microVMs. The same binary is the
// guest's init: started by the kernel as PID 1, it boots the guest and
// serves the host's requests.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/pyro-sandbox/pyro/internal/cli"
	"github.com/pyro-sandbox/pyro/internal/guest"
	"github.com/pyro-sandbox/pyro/internal/supervisor"
	"github.com/pyro-sandbox/pyro/pyro"
)

func main() {
	if os.Getpid() == 1 {
		if os.Getenv(guest.EnvHostCompat) != "" {
			guest.HostCompatMain()
		}
		guest.Main()
		return
	}
	if len(os.Args) > 1 && os.Args[1] == supervisor.Command {
		os.Exit(supervisor.Main(os.Args[2:]))
	}
	pyro.MarkSelfAsAgent()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
