package pyro

import (
	"os/exec"

	"github.com/pyro-sandbox/pyro/internal/shellquote"
)

func lookPath(name string) (string, error) { return exec.LookPath(name) }

// shellJoin renders argv as one command line a POSIX shell would split
// back into argv.
func shellJoin(argv []string) string { return shellquote.Join(argv) }
