package supervisor

// Observation is what a client sees of a workspace's supervisor.
type Observation struct {
	// RecordedRunning: the workspace's record says it runs (started).
	RecordedRunning bool
	// HaveBootstrap: a bootstrap file exists.
	HaveBootstrap bool
	// SupervisorAlive: the bootstrap's pid is the process it names.
	SupervisorAlive bool
	// Answers: the supervisor's socket accepted a connection and said
	// hello.
	Answers bool
	// VMMAlive: the VMM process the bootstrap names still runs.
	VMMAlive bool
	// Expired: the workspace's TTL has passed.
	Expired bool
}

// Action is what the client does about it.
type Action int

const (
	// Use the supervisor: it is alive and answers.
	Use Action = iota
	// Wait: it is alive but does not answer yet (starting, or busy); the
	// caller retries briefly before treating it as hung.
	Wait
	// CleanUp: it is gone (or hung); kill any leftover VMM after checking
	// its identity, remove the socket and bootstrap, and record the
	// workspace as stopped.
	CleanUp
	// Delete: the TTL passed; stop whatever runs and delete the workspace.
	Delete
	// Stopped: nothing runs and the record says so already.
	Stopped
)

func (a Action) String() string {
	return [...]string{"use", "wait", "clean-up", "delete", "stopped"}[a]
}

// Decide is the keep-or-clean decision. It is pure so that every case can
// be tested in a table.
func Decide(o Observation) Action {
	switch {
	case o.Expired:
		return Delete
	case o.HaveBootstrap && o.SupervisorAlive && o.Answers:
		return Use
	case o.HaveBootstrap && o.SupervisorAlive:
		return Wait
	case o.HaveBootstrap || o.VMMAlive || o.RecordedRunning:
		// The supervisor is dead: whatever it left (a VMM, a socket, a
		// record saying "started") must be made true again.
		return CleanUp
	}
	return Stopped
}
