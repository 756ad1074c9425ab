package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/pyro-sandbox/pyro/internal/agentproto"
	"github.com/pyro-sandbox/pyro/internal/errs"
	"github.com/pyro-sandbox/pyro/internal/store"
	"github.com/pyro-sandbox/pyro/internal/vmm"
)

// LogFile is the supervisor's log in the workspace directory.
const LogFile = "supervisor.log"

// envDaemon marks the second, detached exec of the supervisor.
const envDaemon = "PYRO_SUPERVISOR_DAEMON"

// SpawnOptions says which supervisor to start.
type SpawnOptions struct {
	Pyro        string // the pyro binary that runs the supervisor
	Agent       string // the static pyro binary booted as the guest's init
	Store       *store.Store
	CacheDir    string
	ID          string
	Accel       vmm.Accelerator
	BootTimeout time.Duration
}

// Spawn starts a workspace's supervisor detached from the caller (its own
// session, reparented away from the caller) and waits until its VM is
// ready or failed. When ctx ends first the supervisor is killed, and its
// VM with it.
func Spawn(ctx context.Context, o SpawnOptions) (Ready, error) {
	logf, err := os.OpenFile(o.Store.Path(o.ID, LogFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return Ready{}, err
	}
	defer logf.Close()
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return Ready{}, err
	}
	defer readyR.Close()
	cmd := exec.Command(o.Pyro, Command,
		"-state", o.Store.Dir, "-cache", o.CacheDir, "-id", o.ID, "-accel", string(o.Accel),
		"-agent", o.Agent, "-boot-timeout", o.BootTimeout.String())
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{readyW} // readyFD
	cmd.Env = os.Environ()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		readyW.Close()
		return Ready{}, fmt.Errorf("starting the supervisor: %w", err)
	}
	readyW.Close()
	// The first exec only starts the detached one and exits.
	if err := cmd.Wait(); err != nil {
		return Ready{}, fmt.Errorf("starting the supervisor: %v (see %s)", err, o.Store.Path(o.ID, LogFile))
	}
	type result struct {
		r   Ready
		err error
	}
	ch := make(chan result, 1)
	go func() {
		var r Ready
		err := json.NewDecoder(readyR).Decode(&r)
		ch <- result{r, err}
	}()
	select {
	case res := <-ch:
		if res.err != nil {
			return Ready{}, errs.New(errs.Internal, "see "+o.Store.Path(o.ID, LogFile),
				"the supervisor ended before its VM was ready: %s", tailOf(o.Store.Path(o.ID, LogFile)))
		}
		if res.r.Error != nil {
			return res.r, &errs.Error{Kind: errs.Kind(res.r.Error.Kind), Msg: res.r.Error.Message, Hint: res.r.Error.Hint}
		}
		return res.r, nil
	case <-ctx.Done():
		KillRunning(o.Store, o.ID)
		return Ready{}, ctx.Err()
	}
}

// Daemonize is the first half of the supervisor's start: it re-executes
// itself in a new session and returns, so the supervisor is not the
// caller's child (no zombie in a long-lived caller such as the MCP
// server). It reports whether this process is the detached one.
func Daemonize(args []string) (detached bool, err error) {
	if os.Getenv(envDaemon) != "" {
		return true, nil
	}
	self, err := os.Executable()
	if err != nil {
		return false, err
	}
	cmd := exec.Command(self, append([]string{Command}, args...)...)
	cmd.Env = append(os.Environ(), envDaemon+"=1")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{os.NewFile(readyFD, "ready")}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return false, err
	}
	return false, cmd.Process.Release()
}

func tailOf(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "(no log)"
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	return strings.Join(lines, " | ")
}

// Dial connects to a workspace's supervisor and waits for its hello.
func Dial(ctx context.Context, socket string) (*agentproto.Session, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, err
	}
	sess, _, err := agentproto.Accept(ctx, conn, agentproto.Config{})
	return sess, err
}

// Call opens a stream for op on sess, sends body, and decodes the result
// event into out. For operations without data.
func Call(ctx context.Context, sess *agentproto.Session, op agentproto.Op, body, out any) error {
	st, err := sess.Open(ctx, op, body)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.CloseSend(); err != nil {
		return err
	}
	return RecvResult(ctx, st, out)
}

// RecvResult reads an operation's result into out and waits for the
// stream's end. The operation must send no other data.
func RecvResult(ctx context.Context, st *agentproto.Stream, out any) error {
	return RecvOutput(ctx, st, out, nil)
}

// RecvOutput reads a stream to its end: data on ChannelStdout goes to
// onData (nil: the operation sends none), and the result — in its event,
// or as JSON on ChannelResult (bounded) when too large for one — into out.
// Everything comes from the guest and is checked as such.
func RecvOutput(ctx context.Context, st *agentproto.Stream, out any, onData func([]byte) error) error {
	var resultData []byte
	var ev *struct {
		Event  string          `json:"event"`
		Result json.RawMessage `json:"result"`
		OnData bool            `json:"on_data"`
	}
	for {
		m, err := st.Recv(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		switch {
		case ev != nil:
			return fmt.Errorf("%w: %s after the result", agentproto.ErrProtocol, m.Type)
		case m.Type == agentproto.FrameEvent:
			ev = &struct {
				Event  string          `json:"event"`
				Result json.RawMessage `json:"result"`
				OnData bool            `json:"on_data"`
			}{}
			if err := json.Unmarshal(m.Data, ev); err != nil || ev.Event != agentproto.EventResult {
				return fmt.Errorf("%w: expected a result event", agentproto.ErrProtocol)
			}
		case m.Channel == agentproto.ChannelResult:
			if len(resultData)+len(m.Data) > agentproto.MaxResultBytes {
				return fmt.Errorf("%w: a result over %d bytes", agentproto.ErrProtocol, agentproto.MaxResultBytes)
			}
			resultData = append(resultData, m.Data...)
		case m.Channel == agentproto.ChannelStdout && onData != nil:
			if err := onData(m.Data); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: unexpected data on channel %d", agentproto.ErrProtocol, m.Channel)
		}
	}
	if ev == nil {
		return fmt.Errorf("%w: the stream ended without a result", agentproto.ErrProtocol)
	}
	raw := ev.Result
	if ev.OnData {
		raw = resultData
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%w: malformed result: %v", agentproto.ErrProtocol, err)
		}
	}
	return nil
}

// Observe looks at a workspace's supervisor: bootstrap, process identity,
// and whether it answers (the session is returned then, for the caller to
// use or close).
func Observe(ctx context.Context, st *store.Store, rec *store.Record) (Observation, *agentproto.Session) {
	o := Observation{RecordedRunning: rec.State == store.StateStarted, Expired: rec.Expired(time.Now())}
	b, ok, _ := ReadBootstrap(st.Path(rec.ID, BootstrapFile))
	o.HaveBootstrap = ok
	if !ok {
		return o, nil
	}
	o.SupervisorAlive = sameProcess(b.PID, b.StartTime, b.BootID)
	o.VMMAlive = sameProcess(b.VMMPID, b.VMMStart, b.BootID)
	if !o.SupervisorAlive {
		return o, nil
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	sess, err := Dial(dctx, b.Socket)
	if err == nil {
		o.Answers = true
		return o, sess
	}
	return o, nil
}

// KillRunning kills a workspace's supervisor and VMM, checking each one's
// identity first, and removes the socket and bootstrap. It is safe when
// nothing runs.
func KillRunning(st *store.Store, id string) {
	b, ok, _ := ReadBootstrap(st.Path(id, BootstrapFile))
	if ok {
		killIfSame(b.PID, b.StartTime, b.BootID)
		killIfSame(b.VMMPID, b.VMMStart, b.BootID)
		// Give the killed processes a moment to go, so the disk is free.
		deadline := time.Now().Add(5 * time.Second)
		for (sameProcess(b.PID, b.StartTime, b.BootID) || sameProcess(b.VMMPID, b.VMMStart, b.BootID)) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		os.Remove(b.Socket)
	} else {
		// No bootstrap: a supervisor that died before writing it may still
		// have its socket bound.
		os.Remove(st.SocketPath(id))
	}
	os.Remove(st.Path(id, BootstrapFile))
}
