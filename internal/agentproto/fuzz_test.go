package agentproto

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// FuzzReadFrame feeds arbitrary bytes to ReadFrame: it never panics, reads
// at most what a header announces within the bounds, allocates no more than
// MaxPayload for any frame, and every frame it accepts encodes back to the
// very bytes it was read from.
func FuzzReadFrame(f *testing.F) {
	for _, fr := range sampleFrames() {
		f.Add(AppendFrame(nil, fr))
	}
	var all []byte
	for _, fr := range sampleFrames() {
		all = AppendFrame(all, fr)
	}
	f.Add(all)
	f.Add(all[:len(all)-3])
	f.Add(rawHeader(MaxPayload, 1, FrameData, ChannelStdout, 0, 0))
	f.Add(rawHeader(0xffffffff, 1, FrameData, ChannelStdout, 0, 0))
	f.Add(rawHeader(0, 1, FrameClose, 0, 0, 1))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, data []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		r := bytes.NewReader(data)
		calls := 0
		for {
			off := len(data) - r.Len()
			calls++
			fr, err := ReadFrame(r)
			consumed := len(data) - r.Len() - off
			if err != nil {
				switch {
				case err == io.EOF:
					if off != len(data) {
						t.Fatalf("io.EOF at offset %d of %d", off, len(data))
					}
				case err == io.ErrUnexpectedEOF:
					if r.Len() != 0 {
						t.Fatalf("io.ErrUnexpectedEOF with %d bytes left", r.Len())
					}
				case errors.Is(err, ErrProtocol):
					if consumed != HeaderSize {
						t.Fatalf("a rejected frame consumed %d bytes, want the header only", consumed)
					}
				default:
					t.Fatalf("ReadFrame error %v is neither EOF nor a protocol error", err)
				}
				break
			}
			if len(fr.Payload) > MaxPayload || cap(fr.Payload) > MaxPayload {
				t.Fatalf("a payload of %d bytes (cap %d)", len(fr.Payload), cap(fr.Payload))
			}
			if consumed != HeaderSize+len(fr.Payload) {
				t.Fatalf("consumed %d bytes for a %d-byte payload", consumed, len(fr.Payload))
			}
			if re := AppendFrame(nil, fr); !bytes.Equal(re, data[off:off+consumed]) {
				t.Fatalf("frame %s re-encodes to\n%x\nnot\n%x", fr.Type, re, data[off:off+consumed])
			}
			// Whatever ReadFrame accepts, it accepts again.
			if _, err := ReadFrame(bytes.NewReader(data[off : off+consumed])); err != nil {
				t.Fatalf("re-reading an accepted frame: %v", err)
			}
		}
		runtime.ReadMemStats(&after)
		// Each call may allocate one payload and a little for its error;
		// the slack covers the rest of the process.
		if got, limit := after.TotalAlloc-before.TotalAlloc, uint64(calls)*(MaxPayload+4096)+256<<10; got > limit {
			t.Fatalf("%d calls allocated %d bytes, more than %d", calls, got, limit)
		}
	})
}

// sampleFrames is one valid frame of each type.
func sampleFrames() []Frame {
	return []Frame{
		{Type: FrameHello, Payload: []byte(`{"versions":[1],"agent":"x","uptime_ms":1}`)},
		{Type: FrameHelloAck, Payload: []byte(`{"version":1,"unix_nano":1}`)},
		{Type: FrameOpen, Stream: 1, Payload: []byte(`{"op":"exec"}`)},
		{Type: FrameData, Stream: 1, Flags: ChannelStdout, Payload: []byte("out")},
		{Type: FrameData, Stream: 1, Flags: ChannelStderr, Payload: nil},
		{Type: FrameEvent, Stream: 1, Payload: []byte(`{"event":"started","pid":1}`)},
		{Type: FrameWindow, Stream: 1, Payload: []byte{0, 1, 0, 0}},
		{Type: FrameClose, Stream: 1},
		{Type: FrameReset, Stream: 1, Payload: []byte(`{"code":"internal","message":"x"}`)},
		{Type: FramePing, Payload: make([]byte, 8)},
		{Type: FramePong, Payload: []byte{0, 0, 0, 0, 0, 0, 0, 1}},
	}
}

// Modes of FuzzHostSession, chosen by the fuzzer.
const (
	fuzzHold      = 1 << iota // the guest keeps the connection open after its bytes
	fuzzRecv                  // the host uses Open and Recv, not Exec
	fuzzStdin                 // the host sends stdin
	fuzzSmall                 // small window and event queue
	fuzzPing                  // the host pings alongside
	fuzzSlowGuest             // the guest reads nothing until its bytes are sent
)

// limitFuzzMinimizing shortens minimizing for FuzzHostSession unless
// -test.fuzzminimizetime is given. Its coverage depends on how goroutines
// are scheduled, so many inputs look new once and not again, and the
// default minute spent minimizing each of them leaves little time to fuzz.
func limitFuzzMinimizing() {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.fuzzminimizetime" })
	if fz := flag.Lookup("test.fuzz"); !set && fz != nil && strings.Contains(fz.Value.String(), "HostSession") {
		flag.Set("test.fuzzminimizetime", "10x")
	}
}

// fuzzDeadline is how long the host waits on the fuzzed guest.
const fuzzDeadline = 30 * time.Millisecond

// FuzzHostSession plays arbitrary bytes as the guest to a host session that
// runs a command on it. The host must end with a result or an error within
// its deadline, never panic, write only well-formed frames and leave no
// goroutine behind.
func FuzzHostSession(f *testing.F) {
	for _, s := range hostSessionSeeds() {
		f.Add(s.wire, s.mode)
	}
	f.Fuzz(func(t *testing.T, wire []byte, mode uint8) {
		baseline := runtime.NumGoroutine()
		done := make(chan struct{})
		go func() {
			defer close(done)
			playGuest(t, wire, mode)
		}()
		select {
		case <-done:
		case <-time.After(fuzzDeadline + 10*time.Second):
			buf := make([]byte, 1<<20)
			t.Fatalf("the host hung past its deadline:\n%s", buf[:runtime.Stack(buf, true)])
		}
		for wait := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > baseline; {
			if time.Now().After(wait) {
				buf := make([]byte, 1<<20)
				t.Fatalf("%d goroutines left behind, %d before:\n%s", runtime.NumGoroutine(), baseline, buf[:runtime.Stack(buf, true)])
			}
			time.Sleep(time.Millisecond)
		}
	})
}

func playGuest(t *testing.T, wire []byte, mode uint8) {
	hc, gc := net.Pipe()
	defer gc.Close()

	// The guest reads every byte the host writes, like a kernel buffer
	// would, and checks that they are well-formed frames. The rest of its
	// bytes wait for the host's first open, so that frames for stream 1
	// meet a stream the host opened.
	opened := make(chan struct{})
	readDone := make(chan error, 1)
	startReading := make(chan struct{})
	go func() {
		var once sync.Once
		defer once.Do(func() { close(opened) })
		<-startReading
		for {
			fr, err := ReadFrame(gc)
			if err != nil {
				readDone <- err
				return
			}
			if fr.Type == FrameOpen {
				once.Do(func() { close(opened) })
			}
		}
	}()
	writeDone := make(chan struct{})
	go func() {
		defer close(writeDone)
		split := len(wire)
		if len(wire) >= HeaderSize {
			split = min(split, HeaderSize+int(min(binary.BigEndian.Uint32(wire), MaxPayload)))
		}
		if mode&fuzzSlowGuest == 0 {
			close(startReading)
		}
		if _, err := gc.Write(wire[:split]); err != nil {
			return
		}
		if mode&fuzzSlowGuest != 0 {
			// The host blocks writing its answer until the guest reads.
			close(startReading)
		}
		<-opened
		if _, err := gc.Write(wire[split:]); err != nil {
			return
		}
		if mode&fuzzHold == 0 {
			gc.Close()
		}
	}()

	cfg := Config{}
	if mode&fuzzSmall != 0 {
		cfg = Config{Window: 1024, MaxQueuedEvents: 4, MaxStreams: 2}
	}
	ctx, cancel := context.WithTimeout(context.Background(), fuzzDeadline)
	defer cancel()
	host, _, err := Accept(ctx, hc, cfg)
	if err == nil {
		var wg sync.WaitGroup
		if mode&fuzzPing != 0 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				host.Ping(ctx)
			}()
		}
		err = runHost(ctx, host, mode)
		wg.Wait()
		host.Close()
	}
	t.Logf("host: %v", err)
	if err == nil {
		t.Fatal("the host ended with neither a result nor an error")
	}
	if !knownHostError(err) {
		t.Fatalf("unexpected kind of error: %v", err)
	}
	gc.Close()
	<-writeDone
	select {
	case <-startReading:
	default:
		close(startReading)
	}
	if err := <-readDone; err != io.EOF && !errors.Is(err, io.ErrClosedPipe) && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("the host wrote a malformed frame: %v", err)
	}
}

// runHost does what pyro does with a guest: run a command, or read a
// stream. A nil error is never returned: a finished command is errDone.
func runHost(ctx context.Context, host *Session, mode uint8) error {
	var stdin io.Reader
	if mode&fuzzStdin != 0 {
		stdin = bytes.NewReader(make([]byte, 100<<10))
	}
	if mode&fuzzRecv == 0 {
		exit, err := host.Exec(ctx, ExecRequest{Argv: []string{"true"}}, stdin, io.Discard, io.Discard)
		if (exit == nil) == (err == nil) {
			return errors.New("Exec returned both or neither of a status and an error")
		}
		if err == nil {
			return errDone
		}
		return err
	}
	st, err := host.Open(ctx, OpExec, ExecRequest{Argv: []string{"cat"}})
	if err != nil {
		return err
	}
	defer st.Close()
	if stdin != nil {
		if _, err := io.Copy(ctxWriter{ctx, st}, stdin); err != nil {
			return err
		}
	}
	st.CloseSend()
	for {
		m, err := st.Recv(ctx)
		if err != nil {
			return err
		}
		if m.Type == FrameEvent {
			var ev Event
			st.RecvEvent(ctx, &ev) // the next one, whatever it is
		}
	}
}

type ctxWriter struct {
	ctx context.Context
	st  *Stream
}

func (w ctxWriter) Write(p []byte) (int, error) { return w.st.SendData(w.ctx, ChannelStdin, p) }

var errDone = errors.New("the command finished")

// knownHostError says whether err is one of the ways a host operation is
// documented to fail.
func knownHostError(err error) bool {
	var perr *Error
	switch {
	case err == errDone, err == io.EOF,
		errors.Is(err, ErrProtocol),
		errors.Is(err, ErrSessionClosed),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, io.ErrClosedPipe),
		errors.As(err, &perr) && perr.Message != "":
		return true
	}
	return false
}

type hostSessionSeed struct {
	wire []byte
	mode uint8
}

// hostSessionSeeds are guests that get the fuzzer past the handshake and
// deep into a stream.
func hostSessionSeeds() []hostSessionSeed {
	enc := func(frames ...Frame) []byte {
		var b []byte
		for _, f := range frames {
			b = AppendFrame(b, f)
		}
		return b
	}
	ev := func(v any) Frame {
		b, _ := json.Marshal(v)
		return Frame{Type: FrameEvent, Stream: 1, Payload: b}
	}
	hello, _ := json.Marshal(Hello{Versions: []int{1}, Agent: "fuzz", Kernel: "6.1", UptimeMillis: 9})
	h := Frame{Type: FrameHello, Payload: hello}
	started := ev(Event{Event: EventStarted, PID: 7})
	exit := ev(Event{Event: EventExit, Exit: &ExitStatus{Code: 1, StdoutBytes: 3}})
	out := Frame{Type: FrameData, Stream: 1, Flags: ChannelStdout, Payload: []byte("out")}
	errOut := Frame{Type: FrameData, Stream: 1, Flags: ChannelStderr, Payload: []byte("err")}
	closeF := Frame{Type: FrameClose, Stream: 1}
	win := Frame{Type: FrameWindow, Stream: 1, Payload: binary.BigEndian.AppendUint32(nil, 64<<10)}
	reset := Frame{Type: FrameReset, Stream: 1, Payload: []byte(`{"code":"not_found","message":"command \"x\" not found"}`)}
	ping := Frame{Type: FramePing, Payload: []byte("12345678")}
	pong := Frame{Type: FramePong, Payload: binary.BigEndian.AppendUint64(nil, 1)}
	big := Frame{Type: FrameData, Stream: 1, Flags: ChannelStdout, Payload: bytes.Repeat([]byte("y"), 1024)}

	complete := enc(h, started, out, errOut, exit, closeF)
	seeds := []hostSessionSeed{
		{enc(h), 0},
		{enc(h), fuzzHold},
		{complete, 0},
		{complete, fuzzHold},
		{complete, fuzzRecv},
		{complete, fuzzStdin | fuzzSmall},
		{complete, fuzzSlowGuest | fuzzPing},
		{enc(h, started, win, out, win, exit, closeF), fuzzStdin},
		{enc(h, started, win, win, win, out, exit, closeF), fuzzStdin | fuzzSmall | fuzzHold},
		{enc(h, ping, pong, started, exit, closeF), fuzzPing},
		{enc(h, reset), 0},
		{enc(h, started, out, reset, out, closeF), fuzzRecv},
		{enc(h, started, big, big), fuzzSmall | fuzzRecv},
		{enc(h, started, exit, exit, closeF), 0},
		{enc(h, started, closeF, closeF), fuzzRecv | fuzzHold},
		{enc(h, started, Frame{Type: FrameData, Stream: 3, Flags: 1, Payload: []byte("x")}), 0},
		{enc(h, ev(Event{Event: "bogus"}), closeF), 0},
		{enc(Frame{Type: FrameHello, Payload: []byte(`{"versions":[2]}`)}), 0},
		{enc(Frame{Type: FrameHello, Payload: []byte(`{"versions":[1,2,3]}`)}, started, exit, closeF), 0},
		{append(enc(h, started), rawHeader(0, 1, FrameClose, 0, 0, 1)...), 0},
		{[]byte(strings.Repeat("\x00", 40)), 0},
	}
	return seeds
}
