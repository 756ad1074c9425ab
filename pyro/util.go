package pyro

import (
	"encoding/json"
	"os/exec"

	"github.com/pyro-sandbox/pyro/internal/errs"

	"github.com/pyro-sandbox/pyro/internal/shellquote"
)

func lookPath(name string) (string, error) { return exec.LookPath(name) }

// shellJoin renders argv as one command line a POSIX shell would split
// back into argv.
func shellJoin(argv []string) string { return shellquote.Join(argv) }

func jsonUnmarshal(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return errs.Wrap(errs.Internal, err, "", "malformed answer from the guest")
	}
	return nil
}
