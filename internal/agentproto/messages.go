package agentproto

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// Hello is the guest's first frame: the agent can serve.
type Hello struct {
	// Versions lists the protocol versions the agent speaks.
	Versions []int `json:"versions"`
	// Agent is the build of the pyro binary running in the guest.
	Agent string `json:"agent"`
	// Kernel is the guest kernel release (uname -r).
	Kernel string `json:"kernel,omitempty"`
	// UptimeMillis is the guest's uptime when it became ready.
	UptimeMillis int64 `json:"uptime_ms"`
	// Boot is the guest's uptime in milliseconds at each step of its init
	// ("init", "modules", "root", ...), for measuring where boots go.
	Boot []BootStep `json:"boot,omitempty"`
}

// BootStep is one step of the guest's init and the uptime when it ended.
type BootStep struct {
	Step     string `json:"step"`
	UptimeMs int64  `json:"uptime_ms"`
}

// HelloAck is the host's answer to Hello.
type HelloAck struct {
	// Version is the protocol version both sides use from now on.
	Version int `json:"version"`
	// UnixNano is the host's wall clock, which the guest adopts.
	UnixNano int64 `json:"unix_nano"`
	// Entropy seeds the guest's random pool (a guest restored from a
	// snapshot would otherwise share its randomness with every clone).
	Entropy []byte `json:"entropy,omitempty"`
}

// Op names an operation a stream is opened for.
type Op string

// Operations of protocol version 1.
const (
	OpExec     Op = "exec"
	OpShutdown Op = "shutdown"
)

// Open is the payload of FrameOpen.
type Open struct {
	Op   Op              `json:"op"`
	Body json.RawMessage `json:"body,omitempty"`
}

// Error is the payload of FrameReset and of error events: what failed, in
// words a user can act on, and a stable code.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

// Error codes.
const (
	CodeNotFound    = "not_found"   // the command or path does not exist
	CodeInvalid     = "invalid"     // the request is malformed
	CodeUnsupported = "unsupported" // the agent does not know the operation
	CodeInternal    = "internal"    // the agent failed
	CodeCancelled   = "cancelled"   // the other side gave up on the stream
	CodePermission  = "permission"  // not allowed
)

// ExecRequest starts a process in the guest.
type ExecRequest struct {
	Argv []string `json:"argv"`
	// Env entries are KEY=VALUE; they are added to the agent's base
	// environment (PATH, HOME, LANG, ...).
	Env []string `json:"env,omitempty"`
	Cwd string   `json:"cwd,omitempty"`
	// TimeoutMillis kills the process group after that long; 0 means none.
	TimeoutMillis int64 `json:"timeout_ms,omitempty"`
	// Stdin says the host will send stdin on ChannelStdin; otherwise the
	// process reads /dev/null.
	Stdin bool `json:"stdin,omitempty"`
	// OutputLimit is how many bytes of each of stdout and stderr the agent
	// forwards; the rest is counted and dropped. 0 means no limit.
	OutputLimit int64 `json:"output_limit,omitempty"`
}

// Event kinds sent on an exec stream.
const (
	EventStarted = "started"
	EventExit    = "exit"
)

// Event is the payload of FrameEvent.
type Event struct {
	Event string `json:"event"`
	// started
	PID int `json:"pid,omitempty"`
	// exit
	Exit *ExitStatus `json:"exit,omitempty"`
}

// ExitStatus is how a process ended.
type ExitStatus struct {
	// Code is the exit code, or 128+signal when a signal killed it.
	Code     int    `json:"code"`
	Signal   string `json:"signal,omitempty"`
	TimedOut bool   `json:"timed_out,omitempty"`
	// StdoutBytes and StderrBytes count everything the process wrote,
	// forwarded or not.
	StdoutBytes int64 `json:"stdout_bytes"`
	StderrBytes int64 `json:"stderr_bytes"`
	DurationMs  int64 `json:"duration_ms"`
}

// Limits on decoded control values.
const (
	maxArgs     = 4096
	maxEnv      = 4096
	maxArgBytes = 256 << 10 // total of argv + env, like a small ARG_MAX
)

// Validate checks a request before the agent acts on it.
func (r *ExecRequest) Validate() error {
	if len(r.Argv) == 0 || r.Argv[0] == "" {
		return fmt.Errorf("empty command")
	}
	if len(r.Argv) > maxArgs || len(r.Env) > maxEnv {
		return fmt.Errorf("too many arguments or environment entries")
	}
	total := 0
	for _, a := range r.Argv {
		total += len(a)
		if containsNUL(a) {
			return fmt.Errorf("argument contains a NUL byte")
		}
	}
	for _, e := range r.Env {
		total += len(e)
		if containsNUL(e) {
			return fmt.Errorf("environment entry contains a NUL byte")
		}
		if i := indexByte(e, '='); i <= 0 {
			return fmt.Errorf("environment entry %q is not KEY=VALUE", truncate(e, 40))
		}
	}
	if total > maxArgBytes {
		return fmt.Errorf("arguments and environment exceed %d bytes", maxArgBytes)
	}
	if containsNUL(r.Cwd) {
		return fmt.Errorf("working directory contains a NUL byte")
	}
	if r.TimeoutMillis < 0 || r.OutputLimit < 0 {
		return fmt.Errorf("negative timeout or output limit")
	}
	return nil
}

func containsNUL(s string) bool { return indexByte(s, 0) >= 0 }

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// truncate shortens untrusted text for error messages, keeping it valid
// UTF-8.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}

// decodeControl decodes a JSON control payload strictly.
func decodeControl(payload []byte, v any) error {
	if err := json.Unmarshal(payload, v); err != nil {
		return protocolErrorf("malformed JSON payload: %v", err)
	}
	return nil
}
