// Command pyro-guest is pyro's guest build: the init and agent of a VM,
// built from the same source as pyro but without the host's CLI, MCP
// server and registry client, so the guest starts it faster (its Go
// runtime and package initialisers run under emulation on hosts without
// KVM). `make build` embeds it in pyro (internal/guestbin); a pyro built
// without it boots itself as the guest's init instead.
package main

import (
	"fmt"
	"os"

	"github.com/pyro-sandbox/pyro/internal/guest"
)

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "pyro-guest is the init of pyro's virtual machines; run pyro instead")
		os.Exit(2)
	}
	if os.Getenv(guest.EnvHostCompat) != "" {
		guest.HostCompatMain()
	}
	guest.Main()
}
