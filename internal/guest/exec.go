package guest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-sandbox/pyro/internal/agentproto"
)

// baseEnv is what every command starts with before the request's entries.
var baseEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/root",
	"USER=root",
	"LOGNAME=root",
	"LANG=C.UTF-8",
	"SHELL=/bin/sh",
}

// drainGrace is how long output is still read after the command exits, for
// what its background children wrote; they may keep the pipe open forever.
const drainGrace = 200 * time.Millisecond

func (a *agent) serveExec(st *agentproto.Stream, body json.RawMessage) {
	var req agentproto.ExecRequest
	if err := json.Unmarshal(body, &req); err != nil {
		st.Abort(&agentproto.Error{Code: agentproto.CodeInvalid, Message: "malformed exec request"})
		return
	}
	if err := req.Validate(); err != nil {
		st.Abort(&agentproto.Error{Code: agentproto.CodeInvalid, Message: err.Error()})
		return
	}
	if err := a.exec(st, &req); err != nil {
		st.Abort(err)
		return
	}
	st.CloseSend()
}

func mergeEnv(base, extra []string) []string {
	env := append([]string(nil), base...)
	for _, kv := range extra {
		k := kv[:strings.IndexByte(kv, '=')+1]
		replaced := false
		for i, old := range env {
			if strings.HasPrefix(old, k) {
				env[i] = kv
				replaced = true
			}
		}
		if !replaced {
			env = append(env, kv)
		}
	}
	return env
}

func lookupEnv(env []string, key string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v
		}
	}
	return ""
}

// lookPath finds argv0 the way a shell would, with the command's own PATH.
func lookPath(argv0, path, cwd string) (string, error) {
	if strings.Contains(argv0, "/") {
		p := argv0
		if !filepath.IsAbs(p) {
			p = filepath.Join(cwd, p)
		}
		if err := checkExecutable(p); err != nil {
			return "", err
		}
		return p, nil
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			// The command's working directory, not the agent's: the
			// file checked must be the file executed.
			dir = cwd
		}
		p := filepath.Join(dir, argv0)
		if checkExecutable(p) == nil {
			return p, nil
		}
	}
	return "", os.ErrNotExist
}

func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return os.ErrPermission
	}
	return nil
}

func (a *agent) exec(st *agentproto.Stream, req *agentproto.ExecRequest) *agentproto.Error {
	env := mergeEnv(a.env, req.Env)
	cwd := req.Cwd
	if cwd == "" {
		cwd = "/"
	}
	if fi, err := os.Stat(cwd); err != nil || !fi.IsDir() {
		return &agentproto.Error{Code: agentproto.CodeNotFound, Message: fmt.Sprintf("working directory %s does not exist in the guest", cwd)}
	}
	path, err := lookPath(req.Argv[0], lookupEnv(env, "PATH"), cwd)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return &agentproto.Error{Code: agentproto.CodePermission, Message: fmt.Sprintf("%s is not executable in the guest", req.Argv[0])}
		}
		return &agentproto.Error{Code: agentproto.CodeNotFound, Message: fmt.Sprintf("command %q not found in the guest", req.Argv[0])}
	}

	stdinR, stdinW, err := pipeOrNull(req.Stdin)
	if err != nil {
		return internalErr(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return internalErr(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return internalErr(err)
	}
	start := time.Now()
	pid, exited, err := a.reaper.start(func() (int, error) {
		p, err := os.StartProcess(path, req.Argv, &os.ProcAttr{
			Dir:   cwd,
			Env:   env,
			Files: []*os.File{stdinR, outW, errW},
			Sys:   &syscall.SysProcAttr{Setpgid: true},
		})
		if err != nil {
			return 0, err
		}
		pid := p.Pid // Release resets it
		p.Release()  // the reaper collects it, not os.Process
		return pid, nil
	})
	stdinR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		if stdinW != nil {
			stdinW.Close()
		}
		return &agentproto.Error{Code: agentproto.CodeInternal, Message: fmt.Sprintf("starting %s: %v", req.Argv[0], err)}
	}
	st.SendEvent(agentproto.Event{Event: agentproto.EventStarted, PID: pid})

	if stdinW != nil {
		go feedStdin(st, stdinW)
	}
	outDone := make(chan int64, 1)
	errDone := make(chan int64, 1)
	go func() { outDone <- pump(st, agentproto.ChannelStdout, outR, req.OutputLimit) }()
	go func() { errDone <- pump(st, agentproto.ChannelStderr, errR, req.OutputLimit) }()

	var timeout <-chan time.Time
	if req.TimeoutMillis > 0 {
		t := time.NewTimer(time.Duration(req.TimeoutMillis) * time.Millisecond)
		defer t.Stop()
		timeout = t.C
	}
	status := agentproto.ExitStatus{}
	var ws unix.WaitStatus
	select {
	case ws = <-exited:
	case <-timeout:
		status.TimedOut = true
		unix.Kill(-pid, unix.SIGKILL)
		ws = <-exited
	case <-st.Done():
		// The host gave up on the command: nobody will read its result.
		unix.Kill(-pid, unix.SIGKILL)
		<-exited
		outR.Close()
		errR.Close()
		return nil
	}
	status.DurationMs = time.Since(start).Milliseconds()
	// Background children may hold the pipes open; read what they wrote
	// within a short grace, then stop listening.
	grace := time.AfterFunc(drainGrace, func() {
		outR.SetReadDeadline(time.Now())
		errR.SetReadDeadline(time.Now())
	})
	status.StdoutBytes = <-outDone
	status.StderrBytes = <-errDone
	grace.Stop()
	outR.Close()
	errR.Close()
	switch {
	case ws.Exited():
		status.Code = ws.ExitStatus()
	case ws.Signaled():
		status.Code = 128 + int(ws.Signal())
		status.Signal = unix.SignalName(ws.Signal())
	}
	if err := st.SendEvent(agentproto.Event{Event: agentproto.EventExit, Exit: &status}); err != nil {
		return nil
	}
	return nil
}

func pipeOrNull(wantPipe bool) (r, w *os.File, err error) {
	if wantPipe {
		return os.Pipe()
	}
	r, err = os.Open(os.DevNull)
	return r, nil, err
}

// feedStdin copies the host's stdin data into the process until the host
// closes its side.
func feedStdin(st *agentproto.Stream, w *os.File) {
	defer w.Close()
	for {
		m, err := st.Recv(context.Background())
		if err != nil {
			return
		}
		if m.Type == agentproto.FrameData && m.Channel == agentproto.ChannelStdin {
			if _, err := w.Write(m.Data); err != nil {
				return
			}
		}
	}
}

// pump forwards a process's output on channel ch, up to limit bytes (0: no
// limit), and counts everything. It keeps draining past the limit so the
// process never blocks on a full pipe.
func pump(st *agentproto.Stream, ch uint8, r *os.File, limit int64) int64 {
	buf := make([]byte, 32<<10)
	var total int64
	forward := true
	budget := int64(-1) // once the drain grace is over: what is left to read
	for budget != 0 {
		p := buf
		if budget > 0 && budget < int64(len(p)) {
			p = p[:budget]
		}
		n, err := r.Read(p)
		if n > 0 {
			chunk := p[:n]
			if limit > 0 && total+int64(n) > limit {
				chunk = chunk[:max(0, limit-total)]
			}
			total += int64(n)
			if budget > 0 {
				budget -= int64(n)
			}
			if forward && len(chunk) > 0 {
				if _, err := st.SendData(context.Background(), ch, chunk); err != nil {
					forward = false
				}
			}
		}
		if err != nil {
			if budget < 0 && errors.Is(err, os.ErrDeadlineExceeded) {
				// The grace is over, but what is in the pipe now was
				// written before: the command's last output may have
				// waited there while a slow host held up SendData. Read
				// that much, and wait for nothing more.
				budget = buffered(r)
				r.SetReadDeadline(time.Time{})
				continue
			}
			return total
		}
	}
	return total
}

// buffered is how many bytes the pipe r holds unread.
func buffered(r *os.File) int64 {
	var n int
	rc, err := r.SyscallConn()
	if err != nil {
		return 0
	}
	rc.Control(func(fd uintptr) {
		n, err = unix.IoctlGetInt(int(fd), unix.TIOCINQ) // FIONREAD
	})
	if err != nil || n < 0 {
		return 0
	}
	return int64(n)
}

func internalErr(err error) *agentproto.Error {
	return &agentproto.Error{Code: agentproto.CodeInternal, Message: err.Error()}
}
