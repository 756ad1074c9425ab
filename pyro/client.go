package pyro

import (
	"os"
	"path/filepath"
	"sync"

	"github.com/pyro-sandbox/pyro/internal/env"
	"github.com/pyro-sandbox/pyro/internal/errs"
	"github.com/pyro-sandbox/pyro/internal/guestbin"
	"github.com/pyro-sandbox/pyro/internal/progress"
	"github.com/pyro-sandbox/pyro/internal/vmm"
	"github.com/pyro-sandbox/pyro/internal/vmm/qemu"
)

// Options configures a Client. The zero value works.
type Options struct {
	// CacheDir holds environments. Default: $PYRO_ENV_CACHE, else
	// $XDG_CACHE_HOME/pyro/environments, else ~/.cache/pyro/environments.
	CacheDir string
	// StateDir holds pyro's own state: workspaces. Default: $PYRO_HOME,
	// else $XDG_DATA_HOME/pyro, else ~/.local/share/pyro.
	StateDir string
	// AgentBinary is the static pyro binary booted as the guest's init.
	// Default: $PYRO_AGENT_BINARY, else, when this program is pyro, the
	// guest build embedded in it (written to the cache) or this program
	// itself, else "pyro" from PATH.
	AgentBinary string
	// Progress receives phase lines and progress of long work; nil
	// discards them.
	Progress Progress
	// OutputLimit is how many bytes of each of stdout and stderr a command
	// keeps (the rest is counted and reported as truncated). Default 1 MiB.
	OutputLimit int64
}

// Progress receives the progress of long work. The CLI renders it as phase
// lines ("[run] phase=start vm_id=...") or progress bars.
type Progress = progress.Reporter

// Client runs pyro's operations. It is safe for concurrent use.
type Client struct {
	opts    Options
	cache   *env.Cache
	backend vmm.Backend

	probeMu sync.Mutex
}

// New returns a client with opts.
func New(opts Options) *Client {
	if opts.CacheDir == "" {
		opts.CacheDir = env.DefaultCacheDir()
	}
	if opts.StateDir == "" {
		opts.StateDir = defaultStateDir()
	}
	if opts.OutputLimit <= 0 {
		opts.OutputLimit = 1 << 20
	}
	if opts.Progress == nil {
		opts.Progress = progress.Nop{}
	}
	return &Client{opts: opts, cache: &env.Cache{Dir: opts.CacheDir}, backend: &qemu.Backend{}}
}

func defaultStateDir() string {
	if d := os.Getenv("PYRO_HOME"); d != "" {
		return d
	}
	base := os.Getenv("XDG_DATA_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = os.TempDir()
		}
		base = filepath.Join(home, ".local", "share")
	}
	return filepath.Join(base, "pyro")
}

// selfIsPyro is set by the pyro command: the running executable can be the
// guest's init.
var selfIsPyro bool

// MarkSelfAsAgent tells the SDK that the running program is the pyro
// binary itself. Only cmd/pyro calls it.
func MarkSelfAsAgent() { selfIsPyro = true }

// selfPath is this program's path when it is pyro, else "".
func selfPath() string {
	if !selfIsPyro {
		return ""
	}
	p, _ := os.Executable()
	return p
}

func (c *Client) agentBinary() (string, error) {
	if c.opts.AgentBinary != "" {
		return c.opts.AgentBinary, nil
	}
	if p := os.Getenv("PYRO_AGENT_BINARY"); p != "" {
		return p, nil
	}
	if selfIsPyro {
		if b := guestbin.Binary(); b != nil {
			return c.cache.GuestBuild(b)
		}
		if p := selfPath(); p != "" {
			return p, nil
		}
	}
	if p, err := lookPath("pyro"); err == nil {
		return p, nil
	}
	return "", errs.New(errs.Unavailable, "install the pyro binary in PATH or set PYRO_AGENT_BINARY",
		"no pyro binary to boot as the guest's init")
}

// WithProgress returns a client that reports progress to p, sharing
// everything else with c.
func (c *Client) WithProgress(p Progress) *Client {
	opts := c.opts
	opts.Progress = p
	return &Client{opts: opts, cache: c.cache, backend: c.backend}
}
