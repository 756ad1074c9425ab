package guest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pyro-sandbox/pyro/internal/agentproto"
)

// These tests run the agent's exec on this host, over an in-memory pipe:
// the real agent and session code, real processes, no VM. They do not use
// os/exec: the agent's reaper collects every child of the test process.

// startAgent connects a host session to an agent serving on the other end
// of a pipe. The session is closed when the test ends.
func startAgent(t *testing.T) *agentproto.Session {
	t.Helper()
	hostEnd, guestEnd := net.Pipe()
	a := &agent{reaper: newReaper(), env: baseEnv}
	served := make(chan error, 1)
	go func() { served <- a.serve(guestEnd) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sess, hello, err := agentproto.Accept(ctx, hostEnd, agentproto.Config{})
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	if !slices.Contains(hello.Versions, agentproto.Version) {
		t.Errorf("hello offers versions %v, want %d among them", hello.Versions, agentproto.Version)
	}
	t.Cleanup(func() {
		sess.Close()
		select {
		case <-served:
		case <-time.After(10 * time.Second):
			t.Error("the agent did not end after the host closed the session")
		}
	})
	return sess
}

type result struct {
	exit           *agentproto.ExitStatus
	stdout, stderr bytes.Buffer
	err            error
	took           time.Duration
}

func run(t *testing.T, sess *agentproto.Session, req agentproto.ExecRequest, stdin io.Reader) *result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := &result{}
	start := time.Now()
	r.exit, r.err = sess.Exec(ctx, req, stdin, &r.stdout, &r.stderr)
	r.took = time.Since(start)
	if ctx.Err() != nil {
		t.Fatalf("%q did not finish within 30 s", req.Argv)
	}
	return r
}

func mustRun(t *testing.T, sess *agentproto.Session, req agentproto.ExecRequest, stdin io.Reader) *result {
	t.Helper()
	r := run(t, sess, req, stdin)
	if r.err != nil {
		t.Fatalf("%q: %v", req.Argv, r.err)
	}
	return r
}

func sh(script string) agentproto.ExecRequest {
	return agentproto.ExecRequest{Argv: []string{"sh", "-c", script}}
}

// gone says the process has ended: it does not exist, or is a zombie
// nobody has reaped yet (an orphan's reaper may be slow outside a VM).
func gone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z' || s[i+2] == 'X'
}

func waitGone(t *testing.T, pids ...int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range pids {
		for !gone(pid) {
			if time.Now().After(deadline) {
				t.Errorf("process %d is still running", pid)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func TestExecExitCodes(t *testing.T) {
	sess := startAgent(t)
	for _, code := range []int{0, 1, 3, 127, 255} {
		r := mustRun(t, sess, sh(fmt.Sprintf("exit %d", code)), nil)
		if r.exit.Code != code || r.exit.Signal != "" || r.exit.TimedOut {
			t.Errorf("exit %d: got %+v", code, r.exit)
		}
	}
	r := mustRun(t, sess, agentproto.ExecRequest{Argv: []string{"/bin/sh", "-c", "true"}}, nil)
	if r.exit.Code != 0 {
		t.Errorf("absolute argv0: %+v", r.exit)
	}
}

func TestExecSignals(t *testing.T) {
	sess := startAgent(t)
	for _, tc := range []struct {
		sig  string
		num  int
		name string
	}{
		{"TERM", 15, "SIGTERM"},
		{"KILL", 9, "SIGKILL"},
		{"INT", 2, "SIGINT"},
		{"HUP", 1, "SIGHUP"},
		{"USR1", 10, "SIGUSR1"},
	} {
		r := mustRun(t, sess, sh("kill -"+tc.sig+" $$"), nil)
		if r.exit.Code != 128+tc.num || r.exit.Signal != tc.name {
			t.Errorf("kill -%s: got code %d signal %q, want %d %q", tc.sig, r.exit.Code, r.exit.Signal, 128+tc.num, tc.name)
		}
	}
}

func TestExecStdoutStderr(t *testing.T) {
	sess := startAgent(t)
	r := mustRun(t, sess, sh("printf 'to out\\n'; printf 'to err' >&2; printf 'more out\\n'; exit 4"), nil)
	if got := r.stdout.String(); got != "to out\nmore out\n" {
		t.Errorf("stdout %q", got)
	}
	if got := r.stderr.String(); got != "to err" {
		t.Errorf("stderr %q", got)
	}
	if r.exit.Code != 4 || r.exit.StdoutBytes != 16 || r.exit.StderrBytes != 6 {
		t.Errorf("exit %+v, want code 4, 16 and 6 bytes", r.exit)
	}
	if r.exit.DurationMs < 0 || r.exit.DurationMs > r.took.Milliseconds()+1 {
		t.Errorf("duration %d ms, but Exec took %v", r.exit.DurationMs, r.took)
	}
}

func TestExecBinaryOutput(t *testing.T) {
	sess := startAgent(t)
	dir := t.TempDir()
	// Every byte value, then enough to need several windows of credit.
	data := make([]byte, 0, 3<<20)
	for i := 0; len(data) < cap(data); i++ {
		data = append(data, byte(i), byte(i>>8), byte(i*7))
	}
	p := filepath.Join(dir, "blob")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	r := mustRun(t, sess, agentproto.ExecRequest{Argv: []string{"cat", p}}, nil)
	if !bytes.Equal(r.stdout.Bytes(), data) {
		t.Errorf("stdout is %d bytes and differs from the %d bytes written", r.stdout.Len(), len(data))
	}
	if r.exit.StdoutBytes != int64(len(data)) || r.exit.StderrBytes != 0 || r.stderr.Len() != 0 {
		t.Errorf("exit %+v, stderr %q", r.exit, r.stderr.String())
	}

	// The same on stderr.
	r = mustRun(t, sess, sh("cat "+p+" >&2"), nil)
	if !bytes.Equal(r.stderr.Bytes(), data) || r.stdout.Len() != 0 {
		t.Errorf("stderr is %d bytes, stdout %d", r.stderr.Len(), r.stdout.Len())
	}
}

func TestExecOutputLimit(t *testing.T) {
	sess := startAgent(t)
	dir := t.TempDir()
	data := bytes.Repeat([]byte("0123456789abcdef"), 100000) // 1.6 MB
	p := filepath.Join(dir, "big")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int64{1, 1000, 64 << 10, int64(len(data)), int64(len(data)) + 1} {
		req := sh("cat " + p + "; cat " + p + " >&2")
		req.OutputLimit = limit
		r := mustRun(t, sess, req, nil)
		want := data[:min(limit, int64(len(data)))]
		if !bytes.Equal(r.stdout.Bytes(), want) {
			t.Errorf("limit %d: kept %d stdout bytes, want the first %d", limit, r.stdout.Len(), len(want))
		}
		if !bytes.Equal(r.stderr.Bytes(), want) {
			t.Errorf("limit %d: kept %d stderr bytes, want the first %d", limit, r.stderr.Len(), len(want))
		}
		// Everything is counted, forwarded or not.
		if r.exit.StdoutBytes != int64(len(data)) || r.exit.StderrBytes != int64(len(data)) || r.exit.Code != 0 {
			t.Errorf("limit %d: exit %+v, want %d bytes each", limit, r.exit, len(data))
		}
	}
}

func TestExecTimeout(t *testing.T) {
	sess := startAgent(t)
	req := sh("echo started; exec sleep 60")
	req.TimeoutMillis = 300
	r := mustRun(t, sess, req, nil)
	if !r.exit.TimedOut || r.exit.Code != 137 || r.exit.Signal != "SIGKILL" {
		t.Errorf("exit %+v, want timed out by SIGKILL", r.exit)
	}
	if r.stdout.String() != "started\n" {
		t.Errorf("stdout %q", r.stdout.String())
	}
	if r.took < 300*time.Millisecond || r.took > 5*time.Second {
		t.Errorf("a 300 ms timeout returned after %v", r.took)
	}

	// A command that finishes in time is not marked.
	req = sh("exit 0")
	req.TimeoutMillis = 10000
	if r := mustRun(t, sess, req, nil); r.exit.TimedOut {
		t.Errorf("exit %+v", r.exit)
	}
}

func TestExecTimeoutKillsTheGroup(t *testing.T) {
	sess := startAgent(t)
	req := sh("sleep 60 & echo $!; wait")
	req.TimeoutMillis = 300
	r := mustRun(t, sess, req, nil)
	if !r.exit.TimedOut {
		t.Fatalf("exit %+v", r.exit)
	}
	child, err := strconv.Atoi(strings.TrimSpace(r.stdout.String()))
	if err != nil {
		t.Fatalf("stdout %q", r.stdout.String())
	}
	waitGone(t, child)
}

func TestExecBackgroundChildHoldingStdout(t *testing.T) {
	sess := startAgent(t)
	// The child keeps the output pipes open for a minute; the command
	// itself is done at once.
	r := mustRun(t, sess, sh("sleep 60 & echo $!; echo bye >&2"), nil)
	pid, err := strconv.Atoi(strings.TrimSpace(r.stdout.String()))
	if err != nil {
		t.Fatalf("stdout %q", r.stdout.String())
	}
	t.Cleanup(func() { killPid(pid) })
	if r.exit.Code != 0 || r.stderr.String() != "bye\n" {
		t.Errorf("exit %+v, stderr %q", r.exit, r.stderr.String())
	}
	if r.took > drainGrace+2*time.Second {
		t.Errorf("exec took %v with a background child holding stdout; the drain grace is %v", r.took, drainGrace)
	}
	// The session is still usable.
	if r := mustRun(t, sess, sh("echo again"), nil); r.stdout.String() != "again\n" {
		t.Errorf("next command: stdout %q", r.stdout.String())
	}
}

func TestExecBackgroundChildStreaming(t *testing.T) {
	sess := startAgent(t)
	// The child writes without end after the command is done: exec still
	// returns soon after the drain grace, with a bounded share of it.
	r := mustRun(t, sess, sh("yes & echo $! >&2"), nil)
	pid, err := strconv.Atoi(strings.TrimSpace(r.stderr.String()))
	if err != nil {
		t.Fatalf("stderr %q", r.stderr.String())
	}
	t.Cleanup(func() { killPid(pid) })
	if r.exit.Code != 0 {
		t.Errorf("exit %+v", r.exit)
	}
	if r.took > drainGrace+3*time.Second {
		t.Errorf("exec took %v with a background child writing without end; the drain grace is %v", r.took, drainGrace)
	}
	if int64(r.stdout.Len()) != r.exit.StdoutBytes {
		t.Errorf("received %d bytes, agent counted %d", r.stdout.Len(), r.exit.StdoutBytes)
	}
	if strings.Trim(r.stdout.String(), "y\n") != "" {
		t.Errorf("stdout is not yes's output")
	}
}

func killPid(pid int) {
	if p, err := os.FindProcess(pid); err == nil {
		p.Kill()
		p.Release()
	}
}

func TestExecStdin(t *testing.T) {
	sess := startAgent(t)
	r := mustRun(t, sess, agentproto.ExecRequest{Argv: []string{"cat"}}, strings.NewReader("hello\nworld"))
	if r.stdout.String() != "hello\nworld" {
		t.Errorf("cat echoed %q", r.stdout.String())
	}
	// EOF reaches the process: read sees the end of its input.
	r = mustRun(t, sess, sh("read a; read b; if read c; then echo more; else echo eof $a $b; fi"), strings.NewReader("1\n2\n"))
	if r.stdout.String() != "eof 1 2\n" {
		t.Errorf("stdout %q", r.stdout.String())
	}
	// More than a window of data, both ways.
	in := bytes.Repeat([]byte{0, 1, 2, 0xff, '\n'}, 300000)
	r = mustRun(t, sess, agentproto.ExecRequest{Argv: []string{"cat"}}, bytes.NewReader(in))
	if !bytes.Equal(r.stdout.Bytes(), in) {
		t.Errorf("cat of %d bytes returned %d bytes", len(in), r.stdout.Len())
	}
	// Without stdin the process reads /dev/null.
	r = mustRun(t, sess, agentproto.ExecRequest{Argv: []string{"wc", "-c"}}, nil)
	if strings.TrimSpace(r.stdout.String()) != "0" {
		t.Errorf("wc -c without stdin: %q", r.stdout.String())
	}
	// A command that ignores its input does not hang.
	r = mustRun(t, sess, sh("exit 5"), strings.NewReader("unread"))
	if r.exit.Code != 5 {
		t.Errorf("exit %+v", r.exit)
	}
}

func agentError(t *testing.T, err error, code string) {
	t.Helper()
	var e *agentproto.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T), want *agentproto.Error", err, err)
	}
	if e.Code != code {
		t.Errorf("error code %q (%s), want %q", e.Code, e.Message, code)
	}
	if e.Message == "" {
		t.Error("empty error message")
	}
}

func TestExecErrors(t *testing.T) {
	sess := startAgent(t)
	dir := t.TempDir()
	noExec := filepath.Join(dir, "noexec")
	os.WriteFile(noExec, []byte("#!/bin/sh\n"), 0o644)
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)

	for _, tc := range []struct {
		name string
		req  agentproto.ExecRequest
		code string
	}{
		{"command not found", agentproto.ExecRequest{Argv: []string{"pyro-no-such-command"}}, agentproto.CodeNotFound},
		{"absolute path not found", agentproto.ExecRequest{Argv: []string{"/no/such/program"}}, agentproto.CodeNotFound},
		{"not executable", agentproto.ExecRequest{Argv: []string{noExec}}, agentproto.CodePermission},
		{"a directory", agentproto.ExecRequest{Argv: []string{dir}}, agentproto.CodePermission},
		{"missing cwd", agentproto.ExecRequest{Argv: []string{"true"}, Cwd: filepath.Join(dir, "missing")}, agentproto.CodeNotFound},
		{"cwd is a file", agentproto.ExecRequest{Argv: []string{"true"}, Cwd: file}, agentproto.CodeNotFound},
		{"empty argv", agentproto.ExecRequest{}, agentproto.CodeInvalid},
		{"empty argv0", agentproto.ExecRequest{Argv: []string{""}}, agentproto.CodeInvalid},
		{"env without =", agentproto.ExecRequest{Argv: []string{"true"}, Env: []string{"JUSTKEY"}}, agentproto.CodeInvalid},
		{"env with empty key", agentproto.ExecRequest{Argv: []string{"true"}, Env: []string{"=v"}}, agentproto.CodeInvalid},
		{"NUL in argument", agentproto.ExecRequest{Argv: []string{"echo", "a\x00b"}}, agentproto.CodeInvalid},
		{"negative timeout", agentproto.ExecRequest{Argv: []string{"true"}, TimeoutMillis: -1}, agentproto.CodeInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, sess, tc.req, nil)
			if r.exit != nil {
				t.Fatalf("exit %+v, want an error", r.exit)
			}
			agentError(t, r.err, tc.code)
		})
	}
	// The session survives refused requests.
	if r := mustRun(t, sess, sh("echo ok"), nil); r.stdout.String() != "ok\n" {
		t.Errorf("stdout %q", r.stdout.String())
	}
}

func TestExecUnknownOp(t *testing.T) {
	sess := startAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := sess.Open(ctx, "format-disk", map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_, err = st.Recv(ctx)
	agentError(t, err, agentproto.CodeUnsupported)
}

func TestExecCwdAndEnv(t *testing.T) {
	sess := startAgent(t)
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := mustRun(t, sess, agentproto.ExecRequest{Argv: []string{"pwd"}, Cwd: dir}, nil)
	if r.stdout.String() != dir+"\n" {
		t.Errorf("pwd in %s: %q", dir, r.stdout.String())
	}
	r = mustRun(t, sess, agentproto.ExecRequest{Argv: []string{"pwd"}}, nil)
	if r.stdout.String() != "/\n" {
		t.Errorf("default cwd: %q", r.stdout.String())
	}

	// The base environment, with the request's entries on top.
	req := sh(`printf '%s|%s|%s|%s|%s' "$HOME" "$LANG" "$FOO" "$USER" "$PATH"`)
	req.Env = []string{"HOME=/work", "FOO=a=b c", "USER="}
	r = mustRun(t, sess, req, nil)
	want := "/work|C.UTF-8|a=b c||" + lookupEnv(baseEnv, "PATH")
	if r.stdout.String() != want {
		t.Errorf("environment %q, want %q", r.stdout.String(), want)
	}
	// Nothing of the test process's own environment leaks in.
	t.Setenv("PYRO_TEST_LEAK", "leaked")
	r = mustRun(t, sess, sh(`printf '%s' "$PYRO_TEST_LEAK"`), nil)
	if r.stdout.String() != "" {
		t.Errorf("the agent's own environment leaked: %q", r.stdout.String())
	}
	r = mustRun(t, sess, agentproto.ExecRequest{Argv: []string{"env"}}, nil)
	lines := strings.Split(strings.TrimSpace(r.stdout.String()), "\n")
	slices.Sort(lines)
	wantEnv := slices.Clone(baseEnv)
	slices.Sort(wantEnv)
	if !slices.Equal(lines, wantEnv) {
		t.Errorf("env printed %q, want %q", lines, wantEnv)
	}

	// The command is looked up in its own PATH, and a relative path in its cwd.
	bin := filepath.Join(dir, "bin")
	os.Mkdir(bin, 0o755)
	os.WriteFile(filepath.Join(bin, "pyro-hello"), []byte("#!/bin/sh\necho hello from $0\n"), 0o755)
	req = agentproto.ExecRequest{Argv: []string{"pyro-hello"}, Env: []string{"PATH=" + bin + ":/usr/bin:/bin"}}
	r = mustRun(t, sess, req, nil)
	if r.stdout.String() != "hello from "+filepath.Join(bin, "pyro-hello")+"\n" {
		t.Errorf("stdout %q", r.stdout.String())
	}
	r = run(t, sess, agentproto.ExecRequest{Argv: []string{"pyro-hello"}}, nil)
	agentError(t, r.err, agentproto.CodeNotFound)
	// An empty PATH element is the command's working directory.
	r = mustRun(t, sess, agentproto.ExecRequest{Argv: []string{"pyro-hello"}, Cwd: bin, Env: []string{"PATH=/usr/bin::/bin"}}, nil)
	if r.stdout.String() != "hello from "+filepath.Join(bin, "pyro-hello")+"\n" {
		t.Errorf("stdout %q", r.stdout.String())
	}
	r = mustRun(t, sess, agentproto.ExecRequest{Argv: []string{"./bin/pyro-hello"}, Cwd: dir}, nil)
	if !strings.HasPrefix(r.stdout.String(), "hello from ") {
		t.Errorf("stdout %q", r.stdout.String())
	}
	// argv[0] is passed as given.
	r = mustRun(t, sess, agentproto.ExecRequest{Argv: []string{"sh", "-c", `echo "$0"`}}, nil)
	if r.stdout.String() != "sh\n" {
		t.Errorf("$0 = %q", r.stdout.String())
	}
}

// TestExecAbortKillsProcess aborts the stream the way a host that gives up
// does, and checks that the process and its group are gone.
func TestExecAbortKillsProcess(t *testing.T) {
	sess := startAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := sess.Open(ctx, agentproto.OpExec, sh("echo $$ $!; sleep 60 & echo $!; wait"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	var ev agentproto.Event
	if err := st.RecvEvent(ctx, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Event != agentproto.EventStarted || ev.PID <= 0 {
		t.Fatalf("first event %+v, want started with a pid", ev)
	}
	var out []byte
	for bytes.Count(out, []byte("\n")) < 2 {
		m, err := st.Recv(ctx)
		if err != nil {
			t.Fatalf("reading output: %v (so far %q)", err, out)
		}
		if m.Type == agentproto.FrameData {
			out = append(out, m.Data...)
		}
	}
	fields := strings.Fields(string(out))
	shPid, _ := strconv.Atoi(fields[0])
	child, _ := strconv.Atoi(fields[len(fields)-1])
	if shPid != ev.PID || child <= 0 {
		t.Fatalf("output %q, started pid %d", out, ev.PID)
	}
	t.Cleanup(func() { killPid(child) })
	if gone(ev.PID) || gone(child) {
		t.Fatal("the processes ended before the abort")
	}
	st.Close()
	waitGone(t, ev.PID, child)
}

// TestExecCancelKillsProcess cancels the context of Session.Exec.
func TestExecCancelKillsProcess(t *testing.T) {
	sess := startAgent(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pids := make(chan []int, 1)
	var out bytes.Buffer
	w := writerFunc(func(p []byte) (int, error) {
		out.Write(p)
		if bytes.Count(out.Bytes(), []byte("\n")) == 2 {
			var ps []int
			for _, f := range strings.Fields(out.String()) {
				n, _ := strconv.Atoi(f)
				ps = append(ps, n)
			}
			pids <- ps
			cancel()
		}
		return len(p), nil
	})
	done := make(chan error, 1)
	go func() {
		_, err := sess.Exec(ctx, sh("echo $$; sleep 60 & echo $!; wait"), nil, w, io.Discard)
		done <- err
	}()
	var ps []int
	select {
	case ps = <-pids:
	case <-time.After(10 * time.Second):
		t.Fatal("no output")
	}
	for _, pid := range ps {
		t.Cleanup(func() { killPid(pid) })
	}
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Exec = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Exec did not return after its context was cancelled")
	}
	waitGone(t, ps...)
	// The session is still usable.
	if r := mustRun(t, sess, sh("echo next"), nil); r.stdout.String() != "next\n" {
		t.Errorf("stdout %q", r.stdout.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestExecConcurrent runs commands side by side on one session. The
// streams are opened one at a time: Session.Open does not yet keep
// concurrent opens in stream-id order on the wire, and the agent rightly
// ends a session that opens stream 3 before stream 1.
func TestExecConcurrent(t *testing.T) {
	sess := startAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var openMu sync.Mutex
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			req := sh(fmt.Sprintf("head -c %d /dev/zero; echo %d >&2; exit %d", i*50000, i, i))
			openMu.Lock()
			st, err := sess.Open(ctx, agentproto.OpExec, req)
			openMu.Unlock()
			if err != nil {
				t.Errorf("command %d: %v", i, err)
				return
			}
			defer st.Close()
			exit, stdout, stderr, err := collect(ctx, st)
			if err != nil {
				t.Errorf("command %d: %v (session: %v)", i, err, sess.Err())
				return
			}
			if exit.Code != i || len(stdout) != i*50000 || string(stderr) != fmt.Sprintf("%d\n", i) {
				t.Errorf("command %d: exit %+v, %d stdout bytes, stderr %q", i, exit, len(stdout), stderr)
			}
		})
	}
	wg.Wait()
}

// collect reads an exec stream to its end.
func collect(ctx context.Context, st *agentproto.Stream) (exit *agentproto.ExitStatus, stdout, stderr []byte, err error) {
	if err := st.CloseSend(); err != nil {
		return nil, nil, nil, err
	}
	for {
		m, err := st.Recv(ctx)
		if errors.Is(err, io.EOF) {
			if exit == nil {
				return nil, stdout, stderr, errors.New("no exit status")
			}
			return exit, stdout, stderr, nil
		}
		if err != nil {
			return nil, stdout, stderr, err
		}
		switch {
		case m.Type == agentproto.FrameData && m.Channel == agentproto.ChannelStdout:
			stdout = append(stdout, m.Data...)
		case m.Type == agentproto.FrameData && m.Channel == agentproto.ChannelStderr:
			stderr = append(stderr, m.Data...)
		case m.Type == agentproto.FrameEvent:
			var ev agentproto.Event
			if err := json.Unmarshal(m.Data, &ev); err != nil {
				return nil, stdout, stderr, err
			}
			if ev.Event == agentproto.EventExit {
				exit = ev.Exit
			}
		}
	}
}

func TestExecLeavesNoGoroutines(t *testing.T) {
	newReaper() // its signal goroutine lives as long as the process
	before := runtime.NumGoroutine()
	func() {
		sess := startAgent(t)
		mustRun(t, sess, sh("echo hi; echo there >&2"), strings.NewReader("in"))
		req := sh("sleep 60")
		req.TimeoutMillis = 50
		mustRun(t, sess, req, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		sess.Exec(ctx, sh("sleep 60"), nil, io.Discard, io.Discard)
		run(t, sess, agentproto.ExecRequest{Argv: []string{"pyro-no-such-command"}}, nil)
		sess.Close()
	}()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestExecSlowHostKeepsOutput: a command that wrote its output and exited
// while the host was slow to read it (its window used up) must still get
// all of it forwarded; the drain grace is for background children, not
// for output already written.
func TestExecSlowHostKeepsOutput(t *testing.T) {
	sess := startAgent(t)
	const size = 300000 // more than a window (256 KiB), less than window + pipe
	var out bytes.Buffer
	first := true
	slow := writerFunc(func(p []byte) (int, error) {
		if first {
			first = false
			time.Sleep(drainGrace + 800*time.Millisecond)
		}
		return out.Write(p)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	exit, err := sess.Exec(ctx, agentproto.ExecRequest{Argv: []string{"head", "-c", strconv.Itoa(size), "/dev/zero"}}, nil, slow, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if out.Len() != size || exit.StdoutBytes != size {
		t.Errorf("received %d bytes, agent counted %d; the command wrote %d", out.Len(), exit.StdoutBytes, size)
	}
}
