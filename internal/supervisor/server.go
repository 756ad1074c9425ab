package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pyro-sandbox/pyro/internal/agentproto"
	"github.com/pyro-sandbox/pyro/internal/buildinfo"
	"github.com/pyro-sandbox/pyro/internal/shellquote"
	"github.com/pyro-sandbox/pyro/internal/store"
	"github.com/pyro-sandbox/pyro/internal/vm"
)

// Operations the supervisor answers itself; everything else is forwarded
// to the guest agent.
const (
	OpStatus   agentproto.Op = "supervisor.status"
	OpShutdown agentproto.Op = "supervisor.shutdown"
)

// Status is the answer to OpStatus.
type Status struct {
	PID          int       `json:"pid"`
	VMMPID       int       `json:"vmm_pid"`
	Accelerator  string    `json:"accelerator"`
	BootedAt     time.Time `json:"booted_at"`
	LastActivity time.Time `json:"last_activity_at"`
	ActiveExecs  int       `json:"active_execs"`
	ActiveOps    int       `json:"active_ops"`
	Agent        string    `json:"agent"`
}

// ShutdownRequest asks the supervisor to stop its VM and exit.
type ShutdownRequest struct {
	// Force stops even while commands run.
	Force bool `json:"force,omitempty"`
	// Discard skips flushing the guest's disk: its content is about to be
	// thrown away (reset, delete).
	Discard bool `json:"discard,omitempty"`
}

// server serves clients for one running VM.
type server struct {
	st      *store.Store
	id      string
	vm      *vm.VM
	booted  time.Time
	logger  *log.Logger
	stop    chan string // reason; the main loop ends the VM
	stopped sync.Once
	discard atomic.Bool

	activeExecs atomic.Int32
	activeOps   atomic.Int32

	mu           sync.Mutex
	lastActivity time.Time
	lastWrite    time.Time
}

func (s *server) requestStop(reason string) {
	s.stopped.Do(func() { s.stop <- reason })
}

func (s *server) touch() {
	s.mu.Lock()
	s.lastActivity = time.Now()
	s.mu.Unlock()
}

func (s *server) activity() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastActivity
}

// serveConn speaks the agent protocol to one client, in the guest's role:
// the client opens streams; the supervisor answers or forwards them.
func (s *server) serveConn(conn net.Conn) {
	hello := agentproto.Hello{Versions: []int{agentproto.Version}, Agent: buildinfo.Version()}
	sess, _, err := agentproto.Serve(conn, hello, agentproto.Config{}, s.handle)
	if err != nil {
		conn.Close()
		return
	}
	<-sess.Done()
}

func (s *server) handle(st *agentproto.Stream, open agentproto.Open) {
	switch open.Op {
	case OpStatus:
		st.SendEvent(agentproto.ResultEvent[Status]{Event: agentproto.EventResult, Result: Status{
			PID: os.Getpid(), VMMPID: s.vm.Machine.PID(), Accelerator: string(s.vm.Accel), BootedAt: s.booted,
			LastActivity: s.activity(), ActiveExecs: int(s.activeExecs.Load()), ActiveOps: int(s.activeOps.Load()),
			Agent: s.vm.Hello.Agent,
		}})
		st.CloseSend()
	case OpShutdown:
		var req ShutdownRequest
		json.Unmarshal(open.Body, &req)
		if !req.Force && s.activeExecs.Load() > 0 {
			st.Abort(&agentproto.Error{Code: "busy", Message: fmt.Sprintf("%d command(s) are running in the workspace", s.activeExecs.Load())})
			return
		}
		s.discard.Store(req.Discard)
		st.SendEvent(agentproto.ResultEvent[struct{}]{Event: agentproto.EventResult})
		st.CloseSend()
		s.requestStop("shutdown requested")
	default:
		s.forward(st, open)
	}
}

// forward relays one client stream to a new stream on the agent session,
// both ways, and journals exec streams.
func (s *server) forward(client *agentproto.Stream, open agentproto.Open) {
	s.touch()
	s.activeOps.Add(1)
	defer s.activeOps.Add(-1)
	var rec *execRecorder
	// An exec counts as running until its exit event: the client that
	// receives that event may delete the workspace at once.
	execEnded := func() {}
	if open.Op == agentproto.OpExec {
		s.activeExecs.Add(1)
		execEnded = sync.OnceFunc(func() { s.activeExecs.Add(-1) })
		defer execEnded()
		rec = newExecRecorder(open.Body)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	up, err := s.vm.Session.Open(ctx, open.Op, open.Body)
	if err != nil {
		client.Abort(&agentproto.Error{Code: agentproto.CodeInternal, Message: "the workspace's VM is not answering: " + err.Error()})
		return
	}
	defer up.Close()
	go func() {
		// Client to agent: data and the end of it. A client that goes away
		// aborts the agent stream (which kills an exec's process).
		for {
			m, err := client.Recv(ctx)
			if errors.Is(err, io.EOF) {
				up.CloseSend()
				return
			}
			if err != nil {
				up.Abort(&agentproto.Error{Code: agentproto.CodeCancelled, Message: "the client went away"})
				cancel()
				return
			}
			if m.Type == agentproto.FrameData {
				if _, err := up.SendData(ctx, m.Channel, m.Data); err != nil {
					return
				}
			} else {
				up.SendEvent(json.RawMessage(m.Data))
			}
		}
	}()
	for {
		m, err := up.Recv(ctx)
		if errors.Is(err, io.EOF) {
			client.CloseSend()
			break
		}
		if err != nil {
			var ae *agentproto.Error
			if !errors.As(err, &ae) {
				ae = &agentproto.Error{Code: agentproto.CodeInternal, Message: "the workspace's VM stopped answering: " + err.Error()}
			}
			client.Abort(ae)
			break
		}
		if rec != nil {
			if rec.observe(m); rec.exit != nil {
				execEnded()
			}
		}
		if m.Type == agentproto.FrameData {
			if _, err := client.SendData(ctx, m.Channel, m.Data); err != nil {
				break
			}
		} else if err := client.SendEvent(json.RawMessage(m.Data)); err != nil {
			break
		}
	}
	s.touch()
	if rec != nil && rec.exit != nil {
		s.recordExec(rec)
	} else {
		s.saveActivity(false)
	}
}

// recordExec appends the command to the journal and updates the record.
func (s *server) recordExec(rec *execRecorder) {
	lock, err := s.st.Lock(context.Background(), s.id)
	if err != nil {
		return
	}
	defer lock.Unlock()
	var r store.Record
	if err := s.st.Read(s.id, &r); err != nil {
		return
	}
	e := rec.entry()
	e.Seq = r.CommandCount + 1
	if err := appendJournal(s.st.Path(s.id, JournalFile), e); err != nil {
		s.logger.Printf("journal: %v", err)
	}
	r.CommandCount++
	r.LastCommand = &store.CommandSummary{Command: e.Command, ExitCode: e.ExitCode, DurationMs: e.DurationMs, TimedOut: e.TimedOut, FinishedAt: e.FinishedAt}
	r.LastActivity = s.activity()
	if err := s.st.Write(s.id, &r); err != nil {
		s.logger.Printf("record: %v", err)
	}
	s.mu.Lock()
	s.lastWrite = time.Now()
	s.mu.Unlock()
}

// saveActivity writes the last activity to the record, at most once a
// second unless forced.
func (s *server) saveActivity(force bool) {
	s.mu.Lock()
	if !force && time.Since(s.lastWrite) < time.Second {
		s.mu.Unlock()
		return
	}
	s.lastWrite = time.Now()
	s.mu.Unlock()
	lock, err := s.st.Lock(context.Background(), s.id)
	if err != nil {
		return
	}
	defer lock.Unlock()
	var r store.Record
	if s.st.Read(s.id, &r) == nil {
		r.LastActivity = s.activity()
		s.st.Write(s.id, &r)
	}
}

// execRecorder watches an exec stream for the history.
type execRecorder struct {
	req     agentproto.ExecRequest
	started time.Time
	stdout  []byte
	stderr  []byte
	outAll  int64
	errAll  int64
	exit    *agentproto.ExitStatus
}

func newExecRecorder(body json.RawMessage) *execRecorder {
	r := &execRecorder{started: time.Now()}
	json.Unmarshal(body, &r.req)
	return r
}

func (r *execRecorder) observe(m agentproto.Message) {
	switch m.Type {
	case agentproto.FrameData:
		buf, all := &r.stdout, &r.outAll
		if m.Channel == agentproto.ChannelStderr {
			buf, all = &r.stderr, &r.errAll
		}
		*all += int64(len(m.Data))
		if room := journalOutputLimit - len(*buf); room > 0 {
			*buf = append(*buf, m.Data[:min(room, len(m.Data))]...)
		}
	case agentproto.FrameEvent:
		var ev agentproto.Event
		if json.Unmarshal(m.Data, &ev) == nil && ev.Event == agentproto.EventExit && ev.Exit != nil {
			r.exit = ev.Exit
		}
	}
}

func (r *execRecorder) entry() JournalEntry {
	e := JournalEntry{
		Command:         shellquote.Join(r.req.Argv),
		Argv:            r.req.Argv,
		Cwd:             r.req.Cwd,
		StartedAt:       r.started,
		FinishedAt:      time.Now(),
		Stdout:          string(r.stdout),
		Stderr:          string(r.stderr),
		StdoutTruncated: r.outAll > int64(len(r.stdout)),
		StderrTruncated: r.errAll > int64(len(r.stderr)),
	}
	if r.exit != nil {
		e.ExitCode, e.TimedOut, e.DurationMs = r.exit.Code, r.exit.TimedOut, r.exit.DurationMs
	}
	return e
}
