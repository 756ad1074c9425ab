package agentproto

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ---- goroutine leaks ----
//
// The module does not require go.uber.org/goleak, so the part of it these
// tests need lives here: after each session test, and once more after all
// tests, no goroutine running this package's code may be left.

func TestMain(m *testing.M) {
	flag.Parse()
	limitFuzzMinimizing()
	code := m.Run()
	if code == 0 {
		if leaks := waitForLeaks(5 * time.Second); len(leaks) > 0 {
			fmt.Fprintf(os.Stderr, "goroutines still running after all tests:\n\n%s\n", strings.Join(leaks, "\n\n"))
			code = 1
		}
	}
	os.Exit(code)
}

// verifyNoLeaks fails t if goroutines of this package still run once the
// test and its other cleanups are done. Call it first so its cleanup runs
// last.
func verifyNoLeaks(t testing.TB) {
	t.Helper()
	t.Cleanup(func() {
		if leaks := waitForLeaks(5 * time.Second); len(leaks) > 0 {
			t.Errorf("%d goroutines leaked:\n\n%s", len(leaks), strings.Join(leaks, "\n\n"))
		}
	})
}

// waitForLeaks gives goroutines on their way out up to d to end and returns
// the stacks of those that did not.
func waitForLeaks(d time.Duration) []string {
	deadline := time.Now().Add(d)
	pause := time.Millisecond
	for {
		leaks := packageGoroutines()
		if len(leaks) == 0 || time.Now().After(deadline) {
			return leaks
		}
		time.Sleep(pause)
		pause = min(2*pause, 50*time.Millisecond)
	}
}

// packageGoroutines returns the stacks of the goroutines, other than the
// caller's, that run this package's code and are not the test framework
// waiting for a test to end.
func packageGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for i, g := range strings.Split(string(buf), "\n\n") {
		switch {
		case i == 0: // the caller
		case !strings.Contains(g, "/internal/agentproto."):
		case strings.Contains(g, "agentproto.TestMain("),
			strings.Contains(g, "testing.(*T).Run("),
			strings.Contains(g, "testing.(*F).Fuzz("):
		default:
			out = append(out, g)
		}
	}
	return out
}

// ---- helpers ----

// testCtx bounds a test so a bug shows as a failure, not a hung run.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// within fails t if ch does not become ready in time.
func within[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// served is what a guest's Serve returned.
type served struct {
	s   *Session
	ack HelloAck
	err error
}

// serveAsync runs the guest's Serve on conn and hands over what it
// returned.
func serveAsync(conn net.Conn, hello Hello, cfg Config, handler Handler) <-chan served {
	ch := make(chan served, 1)
	go func() {
		s, ack, err := Serve(conn, hello, cfg, handler)
		ch <- served{s, ack, err}
	}()
	return ch
}

// pair connects a host and a guest session over net.Pipe, which has no
// buffer at all: any missing flow control or lost wakeup shows as a hang.
func pair(t testing.TB, hostCfg, guestCfg Config, handler Handler) (host, guest *Session) {
	t.Helper()
	hc, gc := net.Pipe()
	ch := serveAsync(gc, Hello{Versions: []int{Version}, Agent: "test", Kernel: "6.1"}, guestCfg, handler)
	host, hello, err := Accept(testCtx(t), hc, hostCfg)
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	g := within(t, ch, "Serve")
	if g.err != nil {
		t.Fatalf("Serve: %v", g.err)
	}
	if hello.Agent != "test" || hello.Kernel != "6.1" {
		t.Fatalf("hello = %+v", hello)
	}
	if g.ack.Version != Version || host.Version() != Version || g.s.Version() != Version {
		t.Fatalf("versions: ack %d, host %d, guest %d", g.ack.Version, host.Version(), g.s.Version())
	}
	t.Cleanup(func() {
		host.Close()
		g.s.Close()
	})
	return host, g.s
}

// rawGuest plays the guest by hand, one raw frame at a time, to do what the
// real guest session never does. It reads everything the host sends, so
// the host never blocks on a write.
type rawGuest struct {
	t    testing.TB
	conn net.Conn

	mu      sync.Mutex
	frames  []Frame // from the host, not yet taken
	readErr error
	changed chan struct{}
	done    chan struct{}
	token   uint64
}

// startRaw returns a host session whose guest end the test writes by hand.
func startRaw(t testing.TB, cfg Config) (*Session, *rawGuest) {
	t.Helper()
	hc, gc := net.Pipe()
	type accepted struct {
		s   *Session
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		s, _, err := Accept(testCtx(t), hc, cfg)
		ch <- accepted{s, err}
	}()
	hello, _ := json.Marshal(Hello{Versions: []int{Version}, Agent: "raw"})
	if _, err := gc.Write(AppendFrame(nil, Frame{Type: FrameHello, Payload: hello})); err != nil {
		t.Fatal(err)
	}
	f, err := ReadFrame(gc)
	if err != nil || f.Type != FrameHelloAck {
		t.Fatalf("reading the ack: %v, %s", err, f.Type)
	}
	var ack HelloAck
	if err := json.Unmarshal(f.Payload, &ack); err != nil || ack.Version != Version || len(ack.Entropy) != 32 {
		t.Fatalf("ack = %+v, %v", ack, err)
	}
	a := within(t, ch, "Accept")
	if a.err != nil {
		t.Fatal(a.err)
	}
	g := &rawGuest{t: t, conn: gc, changed: make(chan struct{}, 1), done: make(chan struct{})}
	go g.readLoop()
	t.Cleanup(func() {
		a.s.Close()
		gc.Close()
		<-g.done
	})
	return a.s, g
}

func (g *rawGuest) readLoop() {
	defer close(g.done)
	for {
		f, err := ReadFrame(g.conn)
		g.mu.Lock()
		if err != nil {
			g.readErr = err
		} else {
			g.frames = append(g.frames, f)
		}
		g.mu.Unlock()
		select {
		case g.changed <- struct{}{}:
		default:
		}
		if err != nil {
			return
		}
	}
}

// write sends frames to the host; the error is that of the pipe, which
// closes when the host tears the session down.
func (g *rawGuest) write(frames ...Frame) error {
	var b []byte
	for _, f := range frames {
		b = AppendFrame(b, f)
	}
	_, err := g.conn.Write(b)
	return err
}

func (g *rawGuest) mustWrite(frames ...Frame) {
	g.t.Helper()
	if err := g.write(frames...); err != nil {
		g.t.Fatalf("writing to the host: %v", err)
	}
}

// next takes the first frame from the host that match accepts, dropping
// those before it.
func (g *rawGuest) next(match func(Frame) bool) (Frame, error) {
	timeout := time.After(10 * time.Second)
	for {
		g.mu.Lock()
		for len(g.frames) > 0 {
			f := g.frames[0]
			g.frames = g.frames[1:]
			if match(f) {
				g.mu.Unlock()
				return f, nil
			}
		}
		err := g.readErr
		g.mu.Unlock()
		if err != nil {
			return Frame{}, err
		}
		select {
		case <-g.changed:
		case <-timeout:
			return Frame{}, errors.New("timed out waiting for a frame from the host")
		}
	}
}

func (g *rawGuest) mustNext(match func(Frame) bool) Frame {
	g.t.Helper()
	f, err := g.next(match)
	if err != nil {
		g.t.Fatal(err)
	}
	return f
}

func isType(t FrameType, stream uint32) func(Frame) bool {
	return func(f Frame) bool { return f.Type == t && f.Stream == stream }
}

// sync pings the host and waits for the pong: the host has handled every
// frame written before.
func (g *rawGuest) sync() {
	g.t.Helper()
	g.token++
	token := binary.BigEndian.AppendUint64(nil, g.token)
	g.mustWrite(Frame{Type: FramePing, Payload: token})
	g.mustNext(func(f Frame) bool { return f.Type == FramePong && bytes.Equal(f.Payload, token) })
}

// open opens a host stream and takes its FrameOpen off the wire.
func (g *rawGuest) open(host *Session) *Stream {
	g.t.Helper()
	st, err := host.Open(testCtx(g.t), OpExec, ExecRequest{Argv: []string{"true"}})
	if err != nil {
		g.t.Fatal(err)
	}
	g.mustNext(isType(FrameOpen, st.ID()))
	return st
}

// expectTeardown waits for the host to end the session over a protocol
// violation whose message contains want.
func expectTeardown(t testing.TB, s *Session, want string) {
	t.Helper()
	within(t, s.Done(), "the session to be torn down")
	err := s.Err()
	if !errors.Is(err, ErrProtocol) {
		t.Fatalf("session ended with %v, want a protocol error", err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("session error %q does not mention %q", err, want)
	}
}

func window(stream uint32, n uint32) Frame {
	return Frame{Type: FrameWindow, Stream: stream, Payload: binary.BigEndian.AppendUint32(nil, n)}
}

func event(stream uint32, v any) Frame {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return Frame{Type: FrameEvent, Stream: stream, Payload: b}
}

// recvAll reads a stream to its end and returns the data per channel and
// the events.
func recvAll(ctx context.Context, st *Stream) (data map[uint8][]byte, events []string, err error) {
	data = map[uint8][]byte{}
	for {
		m, err := st.Recv(ctx)
		if err == io.EOF {
			return data, events, nil
		}
		if err != nil {
			return data, events, err
		}
		switch m.Type {
		case FrameData:
			data[m.Channel] = append(data[m.Channel], m.Data...)
		case FrameEvent:
			events = append(events, string(m.Data))
		}
	}
}

// ---- handshake ----

func TestHandshakeVersionChoice(t *testing.T) {
	verifyNoLeaks(t)
	tests := []struct {
		offer []int
		want  int // 0: refused
	}{
		{[]int{1}, 1},
		{[]int{1, 2}, 1},
		{[]int{2, 1}, 1},
		{[]int{7, 1, -3}, 1},
		{[]int{2}, 0},
		{[]int{0}, 0},
		{[]int{-1}, 0},
		{nil, 0},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.offer), func(t *testing.T) {
			hc, gc := net.Pipe()
			defer gc.Close()
			ch := serveAsync(gc, Hello{Versions: tt.offer, Agent: "a"}, Config{}, nil)
			before := time.Now()
			host, hello, err := Accept(testCtx(t), hc, Config{})
			g := within(t, ch, "Serve")
			if tt.want == 0 {
				if !errors.Is(err, ErrProtocol) {
					t.Fatalf("Accept = %v, want a protocol error", err)
				}
				if !strings.Contains(err.Error(), fmt.Sprint(tt.offer)) {
					t.Errorf("error %q does not name the versions %v", err, tt.offer)
				}
				if hello.Agent != "a" {
					t.Errorf("the refused hello is not returned: %+v", hello)
				}
				if g.err == nil {
					t.Fatal("Serve succeeded against a host that refused it")
				}
				return
			}
			if err != nil || g.err != nil {
				t.Fatalf("Accept: %v; Serve: %v", err, g.err)
			}
			defer host.Close()
			defer g.s.Close()
			if host.Version() != tt.want || g.ack.Version != tt.want || g.s.Version() != tt.want {
				t.Fatalf("version host %d, ack %d, guest %d; want %d", host.Version(), g.ack.Version, g.s.Version(), tt.want)
			}
			if len(g.ack.Entropy) != 32 || bytes.Equal(g.ack.Entropy, make([]byte, 32)) {
				t.Errorf("ack entropy %x", g.ack.Entropy)
			}
			if at := time.Unix(0, g.ack.UnixNano); at.Before(before.Add(-time.Second)) || at.After(time.Now().Add(time.Second)) {
				t.Errorf("ack clock %v, want about %v", at, before)
			}
		})
	}
}

func TestAcceptRejectsBadHello(t *testing.T) {
	verifyNoLeaks(t)
	tests := []struct {
		name string
		wire []byte
		want string
	}{
		{"ping first", AppendFrame(nil, Frame{Type: FramePing, Payload: make([]byte, 8)}), "first frame is ping"},
		{"open first", AppendFrame(nil, Frame{Type: FrameOpen, Stream: 1, Payload: []byte(`{}`)}), "first frame is open"},
		{"hello-ack first", AppendFrame(nil, Frame{Type: FrameHelloAck, Payload: []byte(`{"version":1}`)}), "first frame is hello-ack"},
		{"hello not JSON", AppendFrame(nil, Frame{Type: FrameHello, Payload: []byte(`{"versions":[1]`)}), "malformed JSON"},
		{"hello of the wrong shape", AppendFrame(nil, Frame{Type: FrameHello, Payload: []byte(`{"versions":"1"}`)}), "malformed JSON"},
		{"empty hello", AppendFrame(nil, Frame{Type: FrameHello}), "malformed JSON"},
		{"bad header", rawHeader(0, 0, FrameHello, 0, 1, 0), "reserved"},
		{"huge hello", rawHeader(MaxPayload, 0, FrameHello, 0, 0, 0), "control bound"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hc, gc := net.Pipe()
			defer gc.Close()
			go gc.Write(tt.wire)
			_, _, err := Accept(testCtx(t), hc, Config{})
			if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Accept = %v, want a protocol error about %q", err, tt.want)
			}
			// Accept closed the connection.
			if _, err := gc.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("guest read after the refusal: %v, want io.EOF", err)
			}
		})
	}
	t.Run("hang up", func(t *testing.T) {
		hc, gc := net.Pipe()
		gc.Close()
		_, _, err := Accept(testCtx(t), hc, Config{})
		if !errors.Is(err, io.EOF) {
			t.Fatalf("Accept = %v, want io.EOF", err)
		}
	})
}

func TestAcceptHonoursContext(t *testing.T) {
	verifyNoLeaks(t)
	t.Run("before the hello", func(t *testing.T) {
		hc, gc := net.Pipe()
		defer gc.Close()
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(20*time.Millisecond, cancel)
		_, _, err := Accept(ctx, hc, Config{})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Accept = %v, want context.Canceled", err)
		}
		if _, err := gc.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("guest read after the cancel: %v, want io.EOF (conn closed)", err)
		}
	})
	t.Run("already cancelled", func(t *testing.T) {
		hc, gc := net.Pipe()
		defer gc.Close()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, _, err := Accept(ctx, hc, Config{}); !errors.Is(err, context.Canceled) {
			t.Fatalf("Accept = %v, want context.Canceled", err)
		}
	})
	t.Run("guest does not read the ack", func(t *testing.T) {
		hc, gc := net.Pipe()
		defer gc.Close()
		hello, _ := json.Marshal(Hello{Versions: []int{1}})
		go gc.Write(AppendFrame(nil, Frame{Type: FrameHello, Payload: hello}))
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		done := make(chan error, 1)
		go func() {
			s, _, err := Accept(ctx, hc, Config{})
			if s != nil {
				s.Close()
			}
			done <- err
		}()
		if err := within(t, done, "Accept to give up"); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Accept = %v, want context.DeadlineExceeded", err)
		}
	})
}

func TestServeRejectsBadAck(t *testing.T) {
	verifyNoLeaks(t)
	tests := []struct {
		name  string
		reply []byte
		want  string
	}{
		{"version 2", AppendFrame(nil, Frame{Type: FrameHelloAck, Payload: []byte(`{"version":2}`)}), "version 2"},
		{"version 0", AppendFrame(nil, Frame{Type: FrameHelloAck, Payload: []byte(`{}`)}), "version 0"},
		{"not an ack", AppendFrame(nil, Frame{Type: FramePing, Payload: make([]byte, 8)}), "answer to hello is ping"},
		{"ack not JSON", AppendFrame(nil, Frame{Type: FrameHelloAck, Payload: []byte(`nope`)}), "malformed JSON"},
		{"bad frame", rawHeader(4, 0, FrameHelloAck, 0, 0, 1), "reserved"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hc, gc := net.Pipe()
			defer hc.Close()
			go func() {
				if _, err := ReadFrame(hc); err == nil {
					hc.Write(tt.reply)
				}
			}()
			s, _, err := Serve(gc, Hello{Versions: []int{1}}, Config{}, nil)
			if s != nil {
				s.Close()
			}
			if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Serve = %v, want a protocol error about %q", err, tt.want)
			}
		})
	}
	t.Run("host hangs up", func(t *testing.T) {
		hc, gc := net.Pipe()
		go func() {
			ReadFrame(hc)
			hc.Close()
		}()
		if _, _, err := Serve(gc, Hello{Versions: []int{1}}, Config{}, nil); !errors.Is(err, io.EOF) {
			t.Fatalf("Serve = %v, want io.EOF", err)
		}
	})
}

// ---- streams between a real host and guest ----

func TestStreamDataAndEventsBothWays(t *testing.T) {
	verifyNoLeaks(t)
	type seen struct {
		open   Open
		events []string
		stdin  []byte
		err    error
	}
	got := make(chan seen, 1)
	handler := func(st *Stream, open Open) {
		s := seen{open: open}
		defer func() { got <- s }()
		ctx := context.Background()
		if err := st.SendEvent(Event{Event: EventStarted, PID: 42}); err != nil {
			s.err = err
			return
		}
		data, events, err := recvAll(ctx, st)
		s.events, s.stdin, s.err = events, data[ChannelStdin], err
		if err != nil {
			return
		}
		if _, err := st.SendData(ctx, ChannelStdout, bytes.ToUpper(s.stdin)); err != nil {
			s.err = err
			return
		}
		if _, err := st.SendData(ctx, ChannelStderr, []byte("warning")); err != nil {
			s.err = err
			return
		}
		st.SendEvent(Event{Event: EventExit, Exit: &ExitStatus{Code: 0}})
		s.err = st.CloseSend()
	}
	host, _ := pair(t, Config{}, Config{}, handler)
	ctx := testCtx(t)

	st, err := host.Open(ctx, OpExec, ExecRequest{Argv: []string{"cat"}})
	if err != nil {
		t.Fatal(err)
	}
	if st.ID() != 1 {
		t.Errorf("first stream id %d, want 1", st.ID())
	}
	if err := st.SendEvent(map[string]string{"hint": "hi"}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(st, "hello "); err != nil {
		t.Fatal(err)
	}
	if _, err := st.SendData(ctx, ChannelStdin, []byte("world")); err != nil {
		t.Fatal(err)
	}
	if n, err := st.SendData(ctx, ChannelStdin, nil); n != 0 || err != nil {
		t.Fatalf("empty SendData = %d, %v", n, err)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatalf("second CloseSend: %v", err)
	}
	if _, err := st.SendData(ctx, ChannelStdin, []byte("late")); err == nil {
		t.Fatal("SendData after CloseSend succeeded")
	}
	if err := st.SendEvent(Event{}); err == nil {
		t.Fatal("SendEvent after CloseSend succeeded")
	}

	var started Event
	if err := st.RecvEvent(ctx, &started); err != nil || started.Event != EventStarted || started.PID != 42 {
		t.Fatalf("RecvEvent = %+v, %v", started, err)
	}
	data, events, err := recvAll(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if string(data[ChannelStdout]) != "HELLO WORLD" || string(data[ChannelStderr]) != "warning" {
		t.Fatalf("stdout %q, stderr %q", data[ChannelStdout], data[ChannelStderr])
	}
	if len(events) != 1 || !strings.Contains(events[0], `"exit"`) {
		t.Fatalf("events %q", events)
	}
	// EOF is sticky.
	if _, err := st.Recv(ctx); err != io.EOF {
		t.Fatalf("Recv after EOF: %v", err)
	}
	within(t, st.Done(), "the stream to end")

	s := within(t, got, "the handler")
	if s.err != nil {
		t.Fatalf("handler: %v", s.err)
	}
	if s.open.Op != OpExec || !strings.Contains(string(s.open.Body), `"cat"`) {
		t.Errorf("open = %s %s", s.open.Op, s.open.Body)
	}
	if string(s.stdin) != "hello world" || len(s.events) != 1 || s.events[0] != `{"hint":"hi"}` {
		t.Errorf("guest saw stdin %q, events %q", s.stdin, s.events)
	}
	if err := st.Close(); err != nil {
		t.Errorf("Close of an ended stream: %v", err)
	}
	// The stream ended cleanly, so it is forgotten on both sides.
	waitFor(t, "streams to be forgotten", func() bool { return streamCount(host) == 0 })
	if host.Err() != nil {
		t.Fatalf("session ended: %v", host.Err())
	}
}

func streamCount(s *Session) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.streams)
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRecvEventRejectsData(t *testing.T) {
	verifyNoLeaks(t)
	host, _ := pair(t, Config{}, Config{}, func(st *Stream, _ Open) {
		st.SendData(context.Background(), ChannelStdout, []byte("x"))
		st.SendEvent("not an object")
		st.CloseSend()
	})
	ctx := testCtx(t)
	st, err := host.Open(ctx, OpExec, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var ev Event
	if err := st.RecvEvent(ctx, &ev); !errors.Is(err, ErrProtocol) {
		t.Fatalf("RecvEvent on data = %v, want a protocol error", err)
	}
	if err := st.RecvEvent(ctx, &ev); !errors.Is(err, ErrProtocol) {
		t.Fatalf("RecvEvent on a string = %v, want a protocol error", err)
	}
}

func TestAbortFromGuest(t *testing.T) {
	verifyNoLeaks(t)
	handlerDone := make(chan error, 1)
	host, _ := pair(t, Config{}, Config{}, func(st *Stream, _ Open) {
		st.SendData(context.Background(), ChannelStdout, []byte("partial"))
		handlerDone <- st.Abort(&Error{Code: CodeNotFound, Message: `command "nope" not found in the guest`})
		// A second abort, and sends after it, do nothing.
		st.Abort(&Error{Code: CodeInternal, Message: "again"})
	})
	ctx := testCtx(t)
	st, err := host.Open(ctx, OpExec, ExecRequest{Argv: []string{"nope"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := within(t, handlerDone, "the handler"); err != nil {
		t.Fatal(err)
	}
	// Data sent before the reset is still delivered, then the reset.
	m, err := st.Recv(ctx)
	if err != nil || string(m.Data) != "partial" {
		t.Fatalf("Recv = %q, %v", m.Data, err)
	}
	_, err = st.Recv(ctx)
	var perr *Error
	if !errors.As(err, &perr) || perr.Code != CodeNotFound || !strings.Contains(perr.Message, "nope") {
		t.Fatalf("Recv = %v, want the guest's *Error", err)
	}
	within(t, st.Done(), "the stream to end")
	if _, err := st.SendData(ctx, ChannelStdin, []byte("x")); !errors.As(err, &perr) {
		t.Fatalf("SendData on a reset stream = %v, want the *Error", err)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatalf("CloseSend on a reset stream = %v", err)
	}
	if host.Err() != nil {
		t.Fatalf("an aborted stream ended the session: %v", host.Err())
	}
}

func TestAbortFromHost(t *testing.T) {
	verifyNoLeaks(t)
	type seen struct {
		recvErr error
		sendErr error
	}
	got := make(chan seen, 1)
	ready := make(chan struct{})
	_, _ = ready, got
	host, _ := pair(t, Config{}, Config{}, func(st *Stream, _ Open) {
		close(ready)
		var s seen
		_, s.recvErr = st.Recv(context.Background())
		<-st.Done()
		_, s.sendErr = st.SendData(context.Background(), ChannelStdout, []byte("x"))
		got <- s
	})
	ctx := testCtx(t)
	st, err := host.Open(ctx, OpExec, nil)
	if err != nil {
		t.Fatal(err)
	}
	within(t, ready, "the handler")
	if err := st.Abort(&Error{Code: CodeCancelled, Message: "user hit ^C"}); err != nil {
		t.Fatal(err)
	}
	s := within(t, got, "the handler to see the abort")
	var perr *Error
	if !errors.As(s.recvErr, &perr) || perr.Code != CodeCancelled || perr.Message != "user hit ^C" {
		t.Fatalf("guest Recv = %v, want the host's *Error", s.recvErr)
	}
	if !errors.As(s.sendErr, &perr) {
		t.Fatalf("guest SendData after the abort = %v, want the *Error", s.sendErr)
	}
	// The host's own Recv reports its own abort.
	if _, err := st.Recv(ctx); !errors.As(err, &perr) || perr.Code != CodeCancelled {
		t.Fatalf("host Recv after Abort = %v", err)
	}
}

func TestStreamCloseAborts(t *testing.T) {
	verifyNoLeaks(t)
	got := make(chan error, 1)
	host, _ := pair(t, Config{}, Config{}, func(st *Stream, _ Open) {
		_, err := st.Recv(context.Background())
		got <- err
	})
	st, err := host.Open(testCtx(t), OpExec, nil)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	var perr *Error
	if err := within(t, got, "the handler"); !errors.As(err, &perr) || perr.Code != CodeCancelled {
		t.Fatalf("guest Recv = %v, want a cancelled *Error", err)
	}
}

func TestPing(t *testing.T) {
	verifyNoLeaks(t)
	host, guest := pair(t, Config{}, Config{}, nil)
	ctx := testCtx(t)
	for i := 0; i < 3; i++ {
		if d, err := host.Ping(ctx); err != nil || d <= 0 {
			t.Fatalf("host Ping = %v, %v", d, err)
		}
		if _, err := guest.Ping(ctx); err != nil {
			t.Fatalf("guest Ping: %v", err)
		}
	}
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := host.Ping(ctx); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	host.Close()
	if _, err := host.Ping(ctx); !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("Ping on a closed session = %v", err)
	}
	within(t, guest.Done(), "the guest to see the hang-up")
	if !errors.Is(guest.Err(), ErrSessionClosed) {
		t.Fatalf("guest session error %v, want ErrSessionClosed", guest.Err())
	}
}

func TestPingHonoursContext(t *testing.T) {
	verifyNoLeaks(t)
	host, g := startRaw(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := host.Ping(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Ping without a pong = %v", err)
	}
	// The pong arrives late: it is not a violation.
	ping := g.mustNext(isType(FramePing, 0))
	g.mustWrite(Frame{Type: FramePong, Payload: ping.Payload})
	g.sync()
	if host.Err() != nil {
		t.Fatalf("a late pong ended the session: %v", host.Err())
	}
}

// echo is a handler that sends back on stdout everything it reads on
// stdin, and ends with an exit event.
func echo(st *Stream, _ Open) {
	ctx := context.Background()
	for {
		m, err := st.Recv(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			return
		}
		if m.Type == FrameData {
			if _, err := st.SendData(ctx, ChannelStdout, m.Data); err != nil {
				return
			}
		}
	}
	st.SendEvent(Event{Event: EventExit, Exit: &ExitStatus{Code: 0}})
	st.CloseSend()
}

func TestManyConcurrentStreams(t *testing.T) {
	verifyNoLeaks(t)
	cfg := Config{Window: 2048}
	host, guest := pair(t, cfg, cfg, echo)
	defer func() {
		if t.Failed() {
			t.Logf("host session: %v; guest session: %v", host.Err(), guest.Err())
		}
	}()
	ctx := testCtx(t)
	const streams = 64
	var wg sync.WaitGroup
	for i := 0; i < streams; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := bytes.Repeat([]byte(fmt.Sprintf("stream %d;", i)), 1000)
			var out bytes.Buffer
			exit, err := host.Exec(ctx, ExecRequest{Argv: []string{"cat"}}, bytes.NewReader(in), &out, io.Discard)
			if err != nil {
				t.Errorf("stream %d: %v", i, err)
				return
			}
			if exit.Code != 0 || !bytes.Equal(out.Bytes(), in) {
				t.Errorf("stream %d: exit %d, %d bytes back of %d", i, exit.Code, out.Len(), len(in))
			}
		}()
	}
	wg.Wait()
	waitFor(t, "streams to be forgotten", func() bool { return streamCount(host) == 0 })
}

func TestMaxStreams(t *testing.T) {
	verifyNoLeaks(t)
	release := make(chan struct{})
	host, _ := pair(t, Config{MaxStreams: 2}, Config{}, func(st *Stream, _ Open) {
		select {
		case <-release:
		case <-st.Done():
		}
		st.CloseSend()
		recvAll(context.Background(), st)
	})
	ctx := testCtx(t)
	a, err := host.Open(ctx, OpExec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := host.Open(ctx, OpExec, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := host.Open(ctx, OpExec, nil); err == nil || errors.Is(err, ErrProtocol) {
		t.Fatalf("third Open = %v, want a local refusal", err)
	}
	a.Abort(&Error{Code: CodeCancelled, Message: "done"})
	c, err := host.Open(ctx, OpExec, nil)
	if err != nil {
		t.Fatalf("Open after a stream ended: %v", err)
	}
	if c.ID() != 5 {
		t.Errorf("stream id %d, want 5", c.ID())
	}
	close(release)
}

func TestStreamIDsDoNotWrap(t *testing.T) {
	verifyNoLeaks(t)
	host, guest := pair(t, Config{}, Config{}, func(st *Stream, _ Open) {
		st.CloseSend()
		recvAll(context.Background(), st)
	})
	ctx := testCtx(t)
	// Both ends as after 2^31 opens.
	for _, s := range []*Session{host, guest} {
		s.mu.Lock()
		s.lastID = math.MaxUint32 - 4
		s.mu.Unlock()
	}
	last, err := host.Open(ctx, OpExec, nil)
	if err != nil {
		t.Fatalf("the last id: %v", err)
	}
	if last.ID() != math.MaxUint32-2 {
		t.Fatalf("id %d, want %d", last.ID(), uint32(math.MaxUint32-2))
	}
	last.CloseSend()
	recvAll(ctx, last)
	if _, err := host.Open(ctx, OpExec, nil); err == nil || !strings.Contains(err.Error(), "stream ids") {
		t.Fatalf("Open past the last id = %v, want a refusal", err)
	}
	// The session itself is still sound.
	if _, err := host.Ping(ctx); err != nil {
		t.Fatalf("ping after the refusal: %v", err)
	}
}

func TestGuestEnforcesMaxStreams(t *testing.T) {
	verifyNoLeaks(t)
	host, guest := pair(t, Config{}, Config{MaxStreams: 1}, func(st *Stream, _ Open) {
		<-st.Done()
	})
	ctx := testCtx(t)
	if _, err := host.Open(ctx, OpExec, nil); err != nil {
		t.Fatal(err)
	}
	// The guest may hang up before the host hears its second open went
	// out, so this one may fail.
	host.Open(ctx, OpExec, nil)
	expectTeardown(t, guest, "more than 1 streams")
	within(t, host.Done(), "the host to see the hang-up")
}

func TestOpenOnGuestAndClosedSession(t *testing.T) {
	verifyNoLeaks(t)
	host, guest := pair(t, Config{}, Config{}, nil)
	ctx := testCtx(t)
	if _, err := guest.Open(ctx, OpExec, nil); err == nil {
		t.Fatal("the guest opened a stream")
	}
	if _, err := host.Open(ctx, OpExec, func() {}); err == nil {
		t.Fatal("Open with a body that is not JSON succeeded")
	}
	big := ExecRequest{Argv: []string{strings.Repeat("x", MaxControlPayload)}}
	if _, err := host.Open(ctx, OpExec, big); err == nil {
		t.Fatal("Open beyond the control bound succeeded")
	}
	host.Close()
	if _, err := host.Open(ctx, OpExec, nil); !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("Open on a closed session = %v", err)
	}
	if err := host.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestSendEventBound(t *testing.T) {
	verifyNoLeaks(t)
	host, _ := pair(t, Config{}, Config{}, echo)
	st, err := host.Open(testCtx(t), OpExec, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.SendEvent(strings.Repeat("x", MaxControlPayload)); err == nil {
		t.Fatal("an event beyond the control bound was sent")
	}
	if err := st.SendEvent(func() {}); err == nil {
		t.Fatal("an event that is not JSON was sent")
	}
	if host.Err() != nil {
		t.Fatal(host.Err())
	}
}

// ---- flow control ----

func TestFlowControlBlocksSender(t *testing.T) {
	verifyNoLeaks(t)
	const win = 4096
	cfg := Config{Window: win}
	var sent atomic.Int64
	const total = 40 * 1000
	handlerErr := make(chan error, 1)
	host, _ := pair(t, cfg, cfg, func(st *Stream, _ Open) {
		chunk := make([]byte, 1000)
		for i := 0; i < total; i += len(chunk) {
			for j := range chunk {
				chunk[j] = byte(i + j)
			}
			if _, err := st.SendData(context.Background(), ChannelStdout, chunk); err != nil {
				handlerErr <- err
				return
			}
			sent.Add(int64(len(chunk)))
		}
		handlerErr <- st.CloseSend()
	})
	ctx := testCtx(t)
	st, err := host.Open(ctx, OpExec, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The host reads nothing: the guest stops once it used the window.
	waitFor(t, "the guest to fill the window", func() bool { return sent.Load() >= win-1000 })
	time.Sleep(100 * time.Millisecond)
	if n := sent.Load(); n > win {
		t.Fatalf("the guest sent %d bytes into a window of %d", n, win)
	}
	st.mu.Lock()
	queued := 0
	for _, m := range st.inbox {
		queued += len(m.Data)
	}
	st.mu.Unlock()
	if queued != win {
		t.Fatalf("%d bytes queued on the host, want the whole window of %d", queued, win)
	}
	// Reading resumes the sender, and everything arrives in order.
	var got []byte
	for {
		m, err := st.Recv(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.Data...)
	}
	if len(got) != total {
		t.Fatalf("got %d bytes, want %d", len(got), total)
	}
	for i := range got {
		if got[i] != byte(i) {
			t.Fatalf("byte %d is %d, want %d", i, got[i], byte(i))
		}
	}
	if err := within(t, handlerErr, "the handler"); err != nil {
		t.Fatal(err)
	}
	st.CloseSend()
}

func TestFlowControlBlocksHostSender(t *testing.T) {
	verifyNoLeaks(t)
	const win = 4096
	cfg := Config{Window: win}
	startReading := make(chan struct{})
	got := make(chan []byte, 1)
	host, _ := pair(t, cfg, cfg, func(st *Stream, _ Open) {
		select {
		case <-startReading:
		case <-st.Done():
			return
		}
		data, _, _ := recvAll(context.Background(), st)
		got <- data[ChannelStdin]
		st.CloseSend()
	})
	ctx := testCtx(t)
	st, err := host.Open(ctx, OpExec, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	payload := make([]byte, 5*win)
	rand.Read(payload)
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	n, err := st.SendData(short, ChannelStdin, payload)
	if !errors.Is(err, context.DeadlineExceeded) || n != win {
		t.Fatalf("SendData to a guest that does not read = %d, %v; want %d, deadline", n, err, win)
	}
	close(startReading)
	if m, err := st.SendData(ctx, ChannelStdin, payload[n:]); err != nil || m != len(payload)-n {
		t.Fatalf("SendData after the guest reads = %d, %v", m, err)
	}
	st.CloseSend()
	if b := within(t, got, "the guest's data"); !bytes.Equal(b, payload) {
		t.Fatalf("the guest got %d bytes, not the %d sent", len(b), len(payload))
	}
}

func TestLargeTransfer(t *testing.T) {
	verifyNoLeaks(t)
	for _, cfg := range []Config{{}, {Window: 1000}, {Window: MaxPayload * 3}} {
		t.Run(fmt.Sprintf("window %d", cfg.Window), func(t *testing.T) {
			verifyNoLeaks(t)
			size := 8 << 20
			if cfg.Window == 1000 || testing.Short() {
				size = 1 << 20
			}
			host, _ := pair(t, cfg, cfg, echo)
			ctx := testCtx(t)
			in := make([]byte, size)
			rand.Read(in)
			st, err := host.Open(ctx, OpExec, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			sendErr := make(chan error, 1)
			go func() {
				// Odd-sized writes, so frames do not line up with the window.
				rest := in
				for len(rest) > 0 {
					n := min(len(rest), 77777)
					if _, err := st.SendData(ctx, ChannelStdin, rest[:n]); err != nil {
						sendErr <- err
						return
					}
					rest = rest[n:]
				}
				sendErr <- st.CloseSend()
			}()
			data, events, err := recvAll(ctx, st)
			if err != nil {
				t.Fatal(err)
			}
			if err := <-sendErr; err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(data[ChannelStdout], in) {
				t.Fatalf("%d bytes back of %d, or not in order", len(data[ChannelStdout]), len(in))
			}
			if len(events) != 1 {
				t.Fatalf("events %q", events)
			}
		})
	}
}

// ---- session close ----

func TestCloseWakesBlockedCalls(t *testing.T) {
	verifyNoLeaks(t)
	cfg := Config{Window: 1024}
	host, guest := pair(t, cfg, cfg, func(st *Stream, _ Open) {
		<-st.Done()
	})
	ctx := testCtx(t)
	recvSt, err := host.Open(ctx, OpExec, nil)
	if err != nil {
		t.Fatal(err)
	}
	sendSt, err := host.Open(ctx, OpExec, nil)
	if err != nil {
		t.Fatal(err)
	}
	recvErr := make(chan error, 1)
	go func() {
		_, err := recvSt.Recv(ctx)
		recvErr <- err
	}()
	sendErr := make(chan error, 1)
	go func() {
		_, err := sendSt.SendData(ctx, ChannelStdin, make([]byte, 10*1024))
		sendErr <- err
	}()
	time.Sleep(50 * time.Millisecond) // let both block
	host.Close()
	if err := within(t, recvErr, "Recv to wake"); !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("Recv = %v, want ErrSessionClosed", err)
	}
	if err := within(t, sendErr, "SendData to wake"); !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("SendData = %v, want ErrSessionClosed", err)
	}
	within(t, recvSt.Done(), "the stream to end")
	within(t, guest.Done(), "the guest to see the hang-up")
	if _, err := sendSt.SendData(ctx, ChannelStdin, []byte("x")); !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("SendData after Close = %v", err)
	}
	if err := sendSt.SendEvent(Event{}); !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("SendEvent after Close = %v", err)
	}
	if !errors.Is(host.Err(), ErrSessionClosed) {
		t.Fatalf("host Err = %v", host.Err())
	}
}

func TestRecvDrainsQueueAfterSessionEnds(t *testing.T) {
	verifyNoLeaks(t)
	host, g := startRaw(t, Config{})
	st := g.open(host)
	g.mustWrite(Frame{Type: FrameData, Stream: st.ID(), Flags: ChannelStdout, Payload: []byte("last words")})
	g.sync()
	g.conn.Close()
	within(t, host.Done(), "the host to see the hang-up")
	ctx := testCtx(t)
	m, err := st.Recv(ctx)
	if err != nil || string(m.Data) != "last words" {
		t.Fatalf("Recv = %q, %v; want the data queued before the hang-up", m.Data, err)
	}
	if _, err := st.Recv(ctx); !errors.Is(err, ErrSessionClosed) || !strings.Contains(err.Error(), "hung up") {
		t.Fatalf("Recv after the queue = %v, want ErrSessionClosed", err)
	}
}

func TestRecvHonoursContext(t *testing.T) {
	verifyNoLeaks(t)
	host, g := startRaw(t, Config{})
	st := g.open(host)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := st.Recv(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Recv = %v", err)
	}
}

// ---- a hostile guest ----

func TestHostTearsDownHostileGuest(t *testing.T) {
	verifyNoLeaks(t)
	data := func(stream uint32, n int) Frame {
		return Frame{Type: FrameData, Stream: stream, Flags: ChannelStdout, Payload: make([]byte, n)}
	}
	const win = 1024
	tests := []struct {
		name   string
		cfg    Config
		frames func(id uint32) []Frame
		want   string
		closed bool // the guest closed the stream cleanly first
	}{
		{"data beyond the window", Config{Window: win}, func(id uint32) []Frame {
			return []Frame{data(id, win+1)}
		}, "beyond the window", false},
		{"data beyond the window in pieces", Config{Window: win}, func(id uint32) []Frame {
			return []Frame{data(id, 600), data(id, 400), data(id, 25)}
		}, "beyond the window", false},
		{"data beyond the default window", Config{}, func(id uint32) []Frame {
			var fs []Frame
			for i := 0; i < 4; i++ {
				fs = append(fs, data(id, MaxPayload))
			}
			return append(fs, data(id, 1))
		}, "beyond the window", false},
		{"events beyond the queue", Config{MaxQueuedEvents: 4}, func(id uint32) []Frame {
			var fs []Frame
			for i := 0; i < 5; i++ {
				fs = append(fs, event(id, Event{Event: EventStarted}))
			}
			return fs
		}, "more than 4 unread events", false},
		{"event not JSON", Config{}, func(id uint32) []Frame {
			return []Frame{{Type: FrameEvent, Stream: id, Payload: []byte("{")}}
		}, "not JSON", false},
		{"empty event", Config{}, func(id uint32) []Frame {
			return []Frame{{Type: FrameEvent, Stream: id}}
		}, "not JSON", false},
		{"close twice", Config{}, func(id uint32) []Frame {
			return []Frame{{Type: FrameClose, Stream: id}, {Type: FrameClose, Stream: id}}
		}, "closed twice", true},
		{"data after close", Config{}, func(id uint32) []Frame {
			return []Frame{{Type: FrameClose, Stream: id}, data(id, 1)}
		}, "after close", true},
		{"event after close", Config{}, func(id uint32) []Frame {
			return []Frame{{Type: FrameClose, Stream: id}, event(id, Event{})}
		}, "after close", true},
		{"stream never opened", Config{}, func(id uint32) []Frame {
			return []Frame{data(id+2, 1)}
		}, "never opened", false},
		{"far stream never opened", Config{}, func(id uint32) []Frame {
			return []Frame{{Type: FrameClose, Stream: 0xffffffff}}
		}, "never opened", false},
		{"even stream never opened", Config{}, func(id uint32) []Frame {
			// The host opens odd ids only: stream 2 lies below the
			// highest id it opened, but never existed.
			return []Frame{window(id-1, 10)}
		}, "never opened", false},
		{"guest opens a stream", Config{}, func(id uint32) []Frame {
			return []Frame{{Type: FrameOpen, Stream: id + 2, Payload: []byte(`{"op":"exec"}`)}}
		}, "may not open", false},
		{"guest reopens a stream", Config{}, func(id uint32) []Frame {
			return []Frame{{Type: FrameOpen, Stream: id, Payload: []byte(`{"op":"exec"}`)}}
		}, "may not open", false},
		{"hello again", Config{}, func(id uint32) []Frame {
			return []Frame{{Type: FrameHello, Payload: []byte(`{"versions":[1]}`)}}
		}, "after the handshake", false},
		{"hello-ack", Config{}, func(id uint32) []Frame {
			return []Frame{{Type: FrameHelloAck, Payload: []byte(`{"version":1}`)}}
		}, "after the handshake", false},
		{"pong never pinged", Config{}, func(id uint32) []Frame {
			return []Frame{{Type: FramePong, Payload: binary.BigEndian.AppendUint64(nil, 99)}}
		}, "never sent", false},
		{"pong zero", Config{}, func(id uint32) []Frame {
			return []Frame{{Type: FramePong, Payload: make([]byte, 8)}}
		}, "never sent", false},
		{"window beyond 1 GiB", Config{}, func(id uint32) []Frame {
			return []Frame{window(id, 1<<30)}
		}, "beyond 1 GiB", false},
		{"window beyond 1 GiB in steps", Config{}, func(id uint32) []Frame {
			return []Frame{window(id, 1<<29), window(id, 1<<29)}
		}, "beyond 1 GiB", false},
		{"window of 4 GiB", Config{}, func(id uint32) []Frame {
			return []Frame{window(id, 0xffffffff)}
		}, "beyond 1 GiB", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, g := startRaw(t, tt.cfg)
			g.open(host)
			st := g.open(host) // stream 3: stream 2 lies below it
			recvErr := make(chan error, 1)
			go func() {
				// Nobody reads the stream until the session ends.
				<-host.Done()
				var err error
				for err == nil {
					_, err = st.Recv(context.Background())
				}
				recvErr <- err
			}()
			// The host may hang up halfway through the frames.
			g.write(tt.frames(st.ID())...)
			expectTeardown(t, host, tt.want)
			err := within(t, recvErr, "Recv")
			if tt.closed && err != io.EOF || !tt.closed && !errors.Is(err, ErrProtocol) {
				t.Fatalf("Recv on the torn-down session = %v", err)
			}
			within(t, st.Done(), "the stream to end")
			if _, err := host.Open(testCtx(t), OpExec, nil); !errors.Is(err, ErrProtocol) {
				t.Fatalf("Open on the torn-down session = %v", err)
			}
			within(t, g.done, "the host to close the connection")
		})
	}
}

func TestHostTearsDownOnBadFrame(t *testing.T) {
	verifyNoLeaks(t)
	for name, wire := range map[string][]byte{
		"reserved bytes":  rawHeader(0, 1, FrameClose, 0, 0, 1),
		"unknown type":    rawHeader(0, 1, 99, 0, 0, 0),
		"unknown channel": rawHeader(1, 1, FrameData, 7, 0, 0),
		"oversized":       rawHeader(MaxPayload+1, 1, FrameData, 1, 0, 0),
	} {
		t.Run(name, func(t *testing.T) {
			host, g := startRaw(t, Config{})
			g.open(host)
			g.conn.Write(wire)
			within(t, host.Done(), "the session to be torn down")
			if !errors.Is(host.Err(), ErrProtocol) {
				t.Fatalf("session error %v", host.Err())
			}
		})
	}
}

func TestHostToleratesLateFrames(t *testing.T) {
	verifyNoLeaks(t)
	host, g := startRaw(t, Config{Window: 1024})
	ctx := testCtx(t)

	// Frames the guest sent before it saw the host's reset are dropped.
	a := g.open(host)
	a.Abort(&Error{Code: CodeCancelled, Message: "bye"})
	g.mustNext(isType(FrameReset, a.ID()))
	g.mustWrite(
		Frame{Type: FrameData, Stream: a.ID(), Flags: ChannelStdout, Payload: make([]byte, 1024)},
		Frame{Type: FrameData, Stream: a.ID(), Flags: ChannelStdout, Payload: make([]byte, 1024)},
		event(a.ID(), Event{}),
		window(a.ID(), 5),
		Frame{Type: FrameClose, Stream: a.ID()},
		Frame{Type: FrameClose, Stream: a.ID()},
		Frame{Type: FrameReset, Stream: a.ID(), Payload: []byte(`{}`)},
	)

	// A stream both sides closed is forgotten; a late reset is dropped.
	b := g.open(host)
	b.CloseSend()
	g.mustNext(isType(FrameClose, b.ID()))
	g.mustWrite(Frame{Type: FrameClose, Stream: b.ID()})
	if _, err := b.Recv(ctx); err != io.EOF {
		t.Fatalf("Recv = %v, want io.EOF", err)
	}
	within(t, b.Done(), "the stream to end")
	g.mustWrite(Frame{Type: FrameReset, Stream: b.ID(), Payload: []byte(`{"code":"x","message":"y"}`)})

	// Empty windows and the guest's own pings are fine.
	c := g.open(host)
	g.mustWrite(window(c.ID(), 0))
	g.sync()
	if host.Err() != nil {
		t.Fatalf("late frames ended the session: %v", host.Err())
	}
	if _, err := b.Recv(ctx); err != io.EOF {
		t.Fatalf("Recv after a late reset = %v, want io.EOF still", err)
	}
}

func TestHostIgnoresEmptyData(t *testing.T) {
	verifyNoLeaks(t)
	host, g := startRaw(t, Config{})
	st := g.open(host)
	// Empty data frames cost the guest nothing from its window: queuing
	// them would let it grow the host's memory without bound.
	empty := AppendFrame(nil, Frame{Type: FrameData, Stream: st.ID(), Flags: ChannelStdout})
	g.conn.Write(bytes.Repeat(empty, 10000))
	g.mustWrite(Frame{Type: FrameData, Stream: st.ID(), Flags: ChannelStdout, Payload: []byte("x")})
	g.sync()
	st.mu.Lock()
	queued := len(st.inbox)
	st.mu.Unlock()
	if queued != 1 {
		t.Fatalf("%d messages queued, want 1", queued)
	}
	m, err := st.Recv(testCtx(t))
	if err != nil || string(m.Data) != "x" {
		t.Fatalf("Recv = %q, %v", m.Data, err)
	}
}

func TestResetFromGuestIsBounded(t *testing.T) {
	verifyNoLeaks(t)
	tests := []struct {
		name    string
		payload string
		code    string
		msg     string
	}{
		{"not JSON", "garbage", CodeInternal, "the agent aborted the operation"},
		{"empty", "", CodeInternal, "the agent aborted the operation"},
		{"no message", `{"code":"not_found"}`, CodeInternal, "the agent aborted the operation"},
		{"long", `{"code":"` + strings.Repeat("c", 1000) + `","message":"` + strings.Repeat("m", 10000) + `"}`,
			strings.Repeat("c", 64) + "…", strings.Repeat("m", 4096) + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, g := startRaw(t, Config{})
			st := g.open(host)
			g.mustWrite(Frame{Type: FrameReset, Stream: st.ID(), Payload: []byte(tt.payload)})
			_, err := st.Recv(testCtx(t))
			var perr *Error
			if !errors.As(err, &perr) || perr.Code != tt.code || perr.Message != tt.msg {
				t.Fatalf("Recv = %v, want code %q", err, tt.code)
			}
			if host.Err() != nil {
				t.Fatal(host.Err())
			}
		})
	}
}

func TestHostTearsDownGuestThatDoesNotRead(t *testing.T) {
	verifyNoLeaks(t)
	// The guest floods pings and never reads the pongs: the host's
	// control queue fills and it gives up instead of buffering forever.
	hc, gc := net.Pipe()
	defer gc.Close()
	go func() {
		hello, _ := json.Marshal(Hello{Versions: []int{1}})
		gc.Write(AppendFrame(nil, Frame{Type: FrameHello, Payload: hello}))
		ReadFrame(gc) // the ack
		ping := AppendFrame(nil, Frame{Type: FramePing, Payload: make([]byte, 8)})
		for {
			if _, err := gc.Write(ping); err != nil {
				return
			}
		}
	}()
	host, _, err := Accept(testCtx(t), hc, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	expectTeardown(t, host, "faster than it reads")
}

// ---- Exec ----

// fakeExec serves exec streams with script, as the agent would.
func fakeExec(t testing.TB, script func(st *Stream, req ExecRequest)) Handler {
	return func(st *Stream, open Open) {
		var req ExecRequest
		if open.Op != OpExec || json.Unmarshal(open.Body, &req) != nil || req.Validate() != nil {
			t.Errorf("bad open: %s %s", open.Op, open.Body)
			st.Abort(&Error{Code: CodeInvalid, Message: "bad request"})
			return
		}
		script(st, req)
	}
}

func TestExec(t *testing.T) {
	verifyNoLeaks(t)
	gotReq := make(chan ExecRequest, 1)
	host, _ := pair(t, Config{}, Config{}, fakeExec(t, func(st *Stream, req ExecRequest) {
		gotReq <- req
		ctx := context.Background()
		st.SendEvent(Event{Event: EventStarted, PID: 7})
		st.SendData(ctx, ChannelStdout, []byte("out1 "))
		st.SendData(ctx, ChannelStderr, []byte("err1"))
		st.SendData(ctx, ChannelStdout, []byte("out2"))
		st.SendEvent(Event{Event: EventExit, Exit: &ExitStatus{Code: 3, StdoutBytes: 9, StderrBytes: 4}})
		st.CloseSend()
	}))
	var stdout, stderr bytes.Buffer
	exit, err := host.Exec(testCtx(t), ExecRequest{Argv: []string{"sh", "-c", "exit 3"}, Env: []string{"A=b"}}, nil, &stdout, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if exit.Code != 3 || exit.StdoutBytes != 9 || exit.StderrBytes != 4 {
		t.Fatalf("exit = %+v", exit)
	}
	if stdout.String() != "out1 out2" || stderr.String() != "err1" {
		t.Fatalf("stdout %q, stderr %q", stdout.String(), stderr.String())
	}
	req := within(t, gotReq, "the request")
	if req.Stdin || len(req.Argv) != 3 || req.Env[0] != "A=b" {
		t.Fatalf("the guest got %+v", req)
	}
	waitFor(t, "the stream to be forgotten", func() bool { return streamCount(host) == 0 })
}

func TestExecStdin(t *testing.T) {
	verifyNoLeaks(t)
	cfg := Config{Window: 4096}
	host, _ := pair(t, cfg, cfg, fakeExec(t, func(st *Stream, req ExecRequest) {
		if !req.Stdin {
			st.Abort(&Error{Code: CodeInvalid, Message: "want stdin"})
			return
		}
		echo(st, Open{})
	}))
	in := make([]byte, 1<<20)
	rand.Read(in)
	var stdout bytes.Buffer
	exit, err := host.Exec(testCtx(t), ExecRequest{Argv: []string{"cat"}}, bytes.NewReader(in), &stdout, io.Discard)
	if err != nil || exit.Code != 0 {
		t.Fatalf("Exec = %+v, %v", exit, err)
	}
	if !bytes.Equal(stdout.Bytes(), in) {
		t.Fatalf("%d bytes back of %d", stdout.Len(), len(in))
	}
}

func TestExecProtocolErrors(t *testing.T) {
	verifyNoLeaks(t)
	exit := func(code int) Event { return Event{Event: EventExit, Exit: &ExitStatus{Code: code}} }
	tests := []struct {
		name   string
		script func(st *Stream)
		want   string
	}{
		{"no exit status", func(st *Stream) {
			st.SendEvent(Event{Event: EventStarted})
		}, "without an exit status"},
		{"nothing at all", func(st *Stream) {}, "without an exit status"},
		{"exit without status", func(st *Stream) {
			st.SendEvent(Event{Event: EventExit})
		}, "malformed exit event"},
		{"exit twice", func(st *Stream) {
			st.SendEvent(exit(0))
			st.SendEvent(exit(1))
		}, "malformed exit event"},
		{"unknown event", func(st *Stream) {
			st.SendEvent(Event{Event: strings.Repeat("z", 100)})
		}, "unknown exec event"},
		{"event not an object", func(st *Stream) {
			st.SendEvent([]int{1})
		}, "malformed JSON"},
		{"output on stdin", func(st *Stream) {
			st.SendData(context.Background(), ChannelStdin, []byte("x"))
			st.SendEvent(exit(0))
		}, "channel 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, _ := pair(t, Config{}, Config{}, fakeExec(t, func(st *Stream, _ ExecRequest) {
				tt.script(st)
				st.CloseSend()
				<-st.Done()
			}))
			_, err := host.Exec(testCtx(t), ExecRequest{Argv: []string{"x"}}, nil, io.Discard, io.Discard)
			if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Exec = %v, want a protocol error about %q", err, tt.want)
			}
			if len(err.Error()) > 200 {
				t.Errorf("error of %d bytes quotes too much of the guest", len(err.Error()))
			}
		})
	}
}

func TestExecGuestRefuses(t *testing.T) {
	verifyNoLeaks(t)
	host, _ := pair(t, Config{}, Config{}, fakeExec(t, func(st *Stream, req ExecRequest) {
		st.Abort(&Error{Code: CodeNotFound, Message: fmt.Sprintf("command %q not found in the guest", req.Argv[0])})
	}))
	_, err := host.Exec(testCtx(t), ExecRequest{Argv: []string{"nope"}}, nil, io.Discard, io.Discard)
	var perr *Error
	if !errors.As(err, &perr) || perr.Code != CodeNotFound {
		t.Fatalf("Exec = %v, want a not_found *Error", err)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestExecOutputWriterFails(t *testing.T) {
	verifyNoLeaks(t)
	aborted := make(chan struct{})
	host, _ := pair(t, Config{}, Config{}, fakeExec(t, func(st *Stream, _ ExecRequest) {
		st.SendData(context.Background(), ChannelStderr, []byte("x"))
		<-st.Done()
		close(aborted)
	}))
	_, err := host.Exec(testCtx(t), ExecRequest{Argv: []string{"x"}}, nil, io.Discard, failingWriter{})
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Exec = %v", err)
	}
	within(t, aborted, "the guest to see the abort")
}

func TestExecCancel(t *testing.T) {
	verifyNoLeaks(t)
	observed := make(chan error, 1)
	host, _ := pair(t, Config{}, Config{}, fakeExec(t, func(st *Stream, _ ExecRequest) {
		st.SendEvent(Event{Event: EventStarted, PID: 1})
		st.SendData(context.Background(), ChannelStdout, []byte("working"))
		<-st.Done()
		_, err := st.Recv(context.Background())
		observed <- err
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	var stdout bytes.Buffer
	start := time.Now()
	_, err := host.Exec(ctx, ExecRequest{Argv: []string{"sleep", "1000"}}, nil, &stdout, io.Discard)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Exec = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Exec took %v to notice its deadline", d)
	}
	if stdout.String() != "working" {
		t.Errorf("stdout %q", stdout.String())
	}
	var perr *Error
	if err := within(t, observed, "the handler to see the abort"); !errors.As(err, &perr) || perr.Code != CodeCancelled {
		t.Fatalf("the guest saw %v, want a cancelled *Error", err)
	}
	if host.Err() != nil {
		t.Fatalf("cancelling a command ended the session: %v", host.Err())
	}
	waitFor(t, "the stream to be forgotten", func() bool { return streamCount(host) == 0 })
}

func TestExecStdinBlockedIsReleased(t *testing.T) {
	verifyNoLeaks(t)
	// The guest never grants window for stdin and exits: the goroutine
	// copying stdin must not outlive Exec.
	cfg := Config{Window: 1024}
	host, _ := pair(t, cfg, cfg, fakeExec(t, func(st *Stream, _ ExecRequest) {
		st.SendEvent(Event{Event: EventExit, Exit: &ExitStatus{Code: 0}})
		st.CloseSend()
	}))
	exit, err := host.Exec(testCtx(t), ExecRequest{Argv: []string{"true"}}, bytes.NewReader(make([]byte, 1<<20)), io.Discard, io.Discard)
	if err != nil || exit.Code != 0 {
		t.Fatalf("Exec = %+v, %v", exit, err)
	}
}

func TestExecOnClosedSession(t *testing.T) {
	verifyNoLeaks(t)
	host, _ := pair(t, Config{}, Config{}, nil)
	host.Close()
	if _, err := host.Exec(testCtx(t), ExecRequest{Argv: []string{"x"}}, nil, io.Discard, io.Discard); !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("Exec = %v", err)
	}
}

func TestExecGuestHangsUp(t *testing.T) {
	verifyNoLeaks(t)
	host, g := startRaw(t, Config{})
	res := make(chan error, 1)
	go func() {
		_, err := host.Exec(testCtx(t), ExecRequest{Argv: []string{"x"}}, nil, io.Discard, io.Discard)
		res <- err
	}()
	g.mustNext(isType(FrameOpen, 1))
	g.mustWrite(event(1, Event{Event: EventStarted}))
	g.conn.Close()
	// The read loop sees the hang-up, or the write loop does first.
	if err := within(t, res, "Exec"); !errors.Is(err, ErrSessionClosed) && !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("Exec = %v, want the hang-up", err)
	}
}

// stalledGuest completes the handshake by hand, reads the first reads
// frames the host sends, then never reads again, as a hostile or wedged
// guest would. net.Pipe has no buffer, so the host's next write blocks.
func stalledGuest(t testing.TB, reads int, frames ...Frame) *Session {
	t.Helper()
	hc, gc := net.Pipe()
	t.Cleanup(func() { gc.Close() })
	go func() {
		hello, _ := json.Marshal(Hello{Versions: []int{1}})
		if _, err := gc.Write(AppendFrame(nil, Frame{Type: FrameHello, Payload: hello})); err != nil {
			return
		}
		if _, err := ReadFrame(gc); err != nil { // the ack
			return
		}
		for i := 0; i < reads; i++ {
			if _, err := ReadFrame(gc); err != nil {
				return
			}
		}
		for _, f := range frames {
			if _, err := gc.Write(AppendFrame(nil, f)); err != nil {
				return
			}
		}
	}()
	host, _, err := Accept(testCtx(t), hc, Config{Window: 1024})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { host.Close() })
	return host
}

func TestHostHonoursDeadlinesWhenGuestStopsReading(t *testing.T) {
	verifyNoLeaks(t)
	started := event(1, Event{Event: EventStarted})
	tests := []struct {
		name string
		run  func(ctx context.Context, host *Session) error
		// what the guest reads and sends before it stalls
		reads  int
		frames []Frame
	}{
		{"Exec, no stdin, guest stalls at once", func(ctx context.Context, host *Session) error {
			_, err := host.Exec(ctx, ExecRequest{Argv: []string{"x"}}, nil, io.Discard, io.Discard)
			return err
		}, 0, nil},
		{"Exec, no stdin, guest stalls after the open", func(ctx context.Context, host *Session) error {
			_, err := host.Exec(ctx, ExecRequest{Argv: []string{"x"}}, nil, io.Discard, io.Discard)
			return err
		}, 1, []Frame{started}},
		{"Exec, stdin, guest stalls after the open", func(ctx context.Context, host *Session) error {
			_, err := host.Exec(ctx, ExecRequest{Argv: []string{"x"}}, bytes.NewReader(make([]byte, 100)), io.Discard, io.Discard)
			return err
		}, 1, []Frame{started}},
		{"Ping", func(ctx context.Context, host *Session) error {
			_, err := host.Ping(ctx)
			return err
		}, 0, nil},
		{"Open", func(ctx context.Context, host *Session) error {
			_, err := host.Open(ctx, OpExec, nil)
			return err
		}, 0, nil},
		{"SendData", func(ctx context.Context, host *Session) error {
			st, err := host.Open(ctx, OpExec, nil)
			if err != nil {
				return err
			}
			defer st.Close()
			_, err = st.SendData(ctx, ChannelStdin, []byte("x"))
			return err
		}, 1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := stalledGuest(t, tt.reads, tt.frames...)
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			res := make(chan error, 1)
			go func() { res <- tt.run(ctx, host) }()
			if err := within(t, res, "the host to give up at its deadline"); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("got %v, want context.DeadlineExceeded", err)
			}
		})
	}
}

func TestAbortBoundsMessage(t *testing.T) {
	verifyNoLeaks(t)
	// An error message built from a long request (a 200 KiB argv[0] that
	// was not found) must not make a reset the peer refuses.
	long := strings.Repeat("x", 200<<10)
	host, _ := pair(t, Config{}, Config{}, func(st *Stream, _ Open) {
		st.Abort(&Error{Code: strings.Repeat("c", 100), Message: "command " + long + " not found"})
	})
	ctx := testCtx(t)
	st, err := host.Open(ctx, OpExec, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = st.Recv(ctx)
	var perr *Error
	if !errors.As(err, &perr) || !strings.HasPrefix(perr.Message, "command xxx") || len(perr.Message) > 4100 {
		t.Fatalf("Recv = %.100v, want the guest's *Error, truncated", err)
	}
	if _, err := host.Ping(ctx); err != nil {
		t.Fatalf("the session did not survive the reset: %v", err)
	}
}

func TestOpenGivenUpAfterHandOffIsReset(t *testing.T) {
	verifyNoLeaks(t)
	// The guest reads nothing until the host's Open gave up: the open
	// was already on its way, so a reset must follow it, or the guest
	// would serve a stream the host forgot.
	hc, gc := net.Pipe()
	defer gc.Close()
	resume := make(chan struct{})
	got := make(chan []Frame, 1)
	go func() {
		hello, _ := json.Marshal(Hello{Versions: []int{1}})
		gc.Write(AppendFrame(nil, Frame{Type: FrameHello, Payload: hello}))
		ReadFrame(gc)
		<-resume
		var fs []Frame
		for len(fs) < 2 {
			f, err := ReadFrame(gc)
			if err != nil {
				break
			}
			fs = append(fs, f)
		}
		got <- fs
	}()
	host, _, err := Accept(testCtx(t), hc, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := host.Open(ctx, OpExec, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Open = %v", err)
	}
	close(resume)
	fs := within(t, got, "the guest's frames")
	if len(fs) != 2 || fs[0].Type != FrameOpen || fs[1].Type != FrameReset || fs[1].Stream != fs[0].Stream {
		t.Fatalf("the guest got %+v, want the open and its reset", fs)
	}
	if streamCount(host) != 0 {
		t.Fatal("the host keeps the stream it gave up")
	}
}

func TestAbortNil(t *testing.T) {
	verifyNoLeaks(t)
	got := make(chan error, 1)
	host, _ := pair(t, Config{}, Config{}, func(st *Stream, _ Open) {
		_, err := st.Recv(context.Background())
		got <- err
	})
	st, err := host.Open(testCtx(t), OpExec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Abort(nil); err != nil {
		t.Fatal(err)
	}
	var perr *Error
	if _, err := st.Recv(testCtx(t)); !errors.As(err, &perr) || perr == nil || perr.Code != CodeCancelled {
		t.Fatalf("host Recv after Abort(nil) = %v", err)
	}
	if err := within(t, got, "the handler"); !errors.As(err, &perr) || perr.Code != CodeCancelled {
		t.Fatalf("guest Recv = %v", err)
	}
}

func TestConcurrentOpensGoOutInOrder(t *testing.T) {
	verifyNoLeaks(t)
	host, g := startRaw(t, Config{})
	ctx := testCtx(t)
	const opens = 200
	var wg sync.WaitGroup
	for i := 0; i < opens; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := host.Open(ctx, OpExec, nil); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	last := uint32(0)
	for i := 0; i < opens; i++ {
		f := g.mustNext(func(f Frame) bool { return f.Type == FrameOpen })
		if f.Stream <= last || f.Stream%2 != 1 {
			t.Fatalf("open of stream %d after stream %d: the guest would refuse it", f.Stream, last)
		}
		last = f.Stream
	}
}

// A template's host reads the hello and never answers; the host of a
// machine restored from it answers that hello with Resume, on a
// connection where the guest's Serve still waits for the answer.
func TestResumeAnswersAHelloReadEarlier(t *testing.T) {
	hc, gc := net.Pipe()
	ch := serveAsync(gc, Hello{Versions: []int{Version}, Agent: "test"}, Config{}, nil)
	hello, err := ReadHello(testCtx(t), hc)
	if err != nil || hello.Agent != "test" {
		t.Fatalf("ReadHello: %+v, %v", hello, err)
	}
	before := time.Now()
	host, err := Resume(testCtx(t), hc, hello, Config{})
	if err != nil {
		t.Fatalf("Resume: %v", err)
	}
	g := within(t, ch, "Serve")
	if g.err != nil {
		t.Fatalf("Serve: %v", g.err)
	}
	t.Cleanup(func() { host.Close(); g.s.Close() })
	if len(g.ack.Entropy) < 32 || time.Unix(0, g.ack.UnixNano).Before(before) {
		t.Errorf("the answer carries entropy %x and clock %d, want fresh ones", g.ack.Entropy, g.ack.UnixNano)
	}
	if _, err := host.Ping(testCtx(t)); err != nil {
		t.Errorf("ping over the resumed session: %v", err)
	}

	// Two answers never carry the same entropy.
	hc2, gc2 := net.Pipe()
	ch2 := serveAsync(gc2, hello, Config{}, nil)
	ReadHello(testCtx(t), hc2)
	host2, err := Resume(testCtx(t), hc2, hello, Config{})
	if err != nil {
		t.Fatal(err)
	}
	host2.Close()
	g2 := within(t, ch2, "Serve")
	if g2.s != nil {
		g2.s.Close()
	}
	if bytes.Equal(g2.ack.Entropy, g.ack.Entropy) {
		t.Errorf("two resumes sent the same entropy")
	}
}

func TestResumeRefusesAnUnknownVersion(t *testing.T) {
	hc, gc := net.Pipe()
	defer gc.Close()
	if _, err := Resume(testCtx(t), hc, Hello{Versions: []int{Version + 1}}, Config{}); !errors.Is(err, ErrProtocol) {
		t.Errorf("Resume with versions it does not speak: %v", err)
	}
}
