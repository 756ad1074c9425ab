package agentproto

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"
)

// Config bounds what one peer may make the other hold. The zero value uses
// the defaults.
type Config struct {
	// Window is the per-stream receive window in bytes: how much data the
	// peer may send before the receiver has consumed it. Default 256 KiB.
	// It is also the credit each side assumes the other grants when a
	// stream opens, so both ends must use the same value.
	Window int
	// MaxStreams bounds the streams open at once. Default 1024.
	MaxStreams int
	// MaxQueuedEvents bounds the events queued on one stream and not yet
	// read. Default 256.
	MaxQueuedEvents int
}

func (c Config) withDefaults() Config {
	if c.Window <= 0 {
		c.Window = 256 << 10
	}
	if c.MaxStreams <= 0 {
		c.MaxStreams = 1024
	}
	if c.MaxQueuedEvents <= 0 {
		c.MaxQueuedEvents = 256
	}
	return c
}

// ErrSessionClosed is returned by operations on a session that ended.
var ErrSessionClosed = errors.New("agent session closed")

// Handler serves one stream the host opened. It runs on its own goroutine
// and owns the stream: it must end it with CloseSend or Abort.
type Handler func(st *Stream, open Open)

// Session is one end of an agent connection.
type Session struct {
	conn    io.ReadWriteCloser
	host    bool
	version int
	cfg     Config
	handler Handler

	ctrl    chan Frame    // frames sent without waiting: pongs, credit, close, reset
	opening chan struct{} // held from choosing a stream id until its open is sent
	writes  chan writeReq // frames from streams, sent in order
	stopped chan struct{} // closed once the session ended
	errOnce sync.Once
	err     error

	mu       sync.Mutex
	streams  map[uint32]*Stream
	lastID   uint32 // highest stream id seen or allocated
	pings    map[uint64]chan struct{}
	pingNext uint64
}

type writeReq struct {
	b    []byte // the encoded frame
	done chan error
}

// Accept waits for the guest's Hello on conn, agrees on a version and
// returns the host end of the session. The guest is untrusted: everything
// it sends is checked. Cancelling ctx before the Hello closes conn.
func Accept(ctx context.Context, conn io.ReadWriteCloser, cfg Config) (*Session, Hello, error) {
	br := bufio.NewReaderSize(conn, 64<<10)
	hello, err := readHello(ctx, conn, br)
	if err != nil {
		return nil, hello, err
	}
	s, err := answer(ctx, conn, br, hello, cfg)
	return s, hello, err
}

// ReadHello waits for the guest's Hello on conn and leaves it unanswered:
// how a template is made (see Resume). It closes conn on failure.
func ReadHello(ctx context.Context, conn io.ReadWriteCloser) (Hello, error) {
	// Unbuffered: nothing may be read past the hello.
	return readHello(ctx, conn, conn)
}

func readHello(ctx context.Context, conn io.ReadWriteCloser, r io.Reader) (Hello, error) {
	type result struct {
		hello Hello
		err   error
	}
	ch := make(chan result, 1)
	go func() {
		var res result
		f, err := ReadFrame(r)
		switch {
		case err != nil:
			res.err = err
		case f.Type != FrameHello:
			res.err = protocolErrorf("first frame is %s, want hello", f.Type)
		default:
			res.err = decodeControl(f.Payload, &res.hello)
		}
		ch <- res
	}()
	var res result
	select {
	case res = <-ch:
	case <-ctx.Done():
		conn.Close()
		<-ch
		return Hello{}, ctx.Err()
	}
	if res.err != nil {
		conn.Close()
		return Hello{}, fmt.Errorf("waiting for the agent's hello: %w", res.err)
	}
	return res.hello, nil
}

// Resume answers, on conn, a hello the agent sent to another host: that of
// the machine a template was made from, which was snapshotted while its
// agent waited for the answer. Every machine restored from the template
// waits the same way, with hello already said. The answer carries this
// host's clock and fresh entropy, so no two clones share randomness.
func Resume(ctx context.Context, conn io.ReadWriteCloser, hello Hello, cfg Config) (*Session, error) {
	return answer(ctx, conn, bufio.NewReaderSize(conn, 64<<10), hello, cfg)
}

// answer agrees on a version with the agent that said hello, sends the
// HelloAck and starts the host end of the session. It closes conn on
// failure.
func answer(ctx context.Context, conn io.ReadWriteCloser, br *bufio.Reader, hello Hello, cfg Config) (*Session, error) {
	version := 0
	for _, v := range hello.Versions {
		if v <= Version && v > version {
			version = v
		}
	}
	if version == 0 {
		conn.Close()
		return nil, fmt.Errorf("%w: the agent speaks versions %v, this pyro speaks up to %d", ErrProtocol, hello.Versions, Version)
	}
	entropy := make([]byte, 32)
	rand.Read(entropy)
	s := newSession(conn, true, version, cfg, nil)
	ack, _ := json.Marshal(HelloAck{Version: version, UnixNano: time.Now().UnixNano(), Entropy: entropy})
	// A guest that sent its hello but does not read the answer must not
	// hold the handshake past ctx.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	_, err := conn.Write(AppendFrame(nil, Frame{Type: FrameHelloAck, Payload: ack}))
	if !stop() {
		conn.Close()
		return nil, ctx.Err()
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("answering the agent's hello: %w", err)
	}
	s.start(br)
	return s, nil
}

// Serve sends hello on conn (the guest end), waits for the host's answer
// and serves the streams the host opens with handler.
func Serve(conn io.ReadWriteCloser, hello Hello, cfg Config, handler Handler) (*Session, HelloAck, error) {
	payload, err := json.Marshal(hello)
	if err != nil {
		return nil, HelloAck{}, err
	}
	if _, err := conn.Write(AppendFrame(nil, Frame{Type: FrameHello, Payload: payload})); err != nil {
		return nil, HelloAck{}, fmt.Errorf("sending hello: %w", err)
	}
	br := bufio.NewReaderSize(conn, 64<<10)
	f, err := ReadFrame(br)
	if err != nil {
		return nil, HelloAck{}, fmt.Errorf("waiting for the host's answer: %w", err)
	}
	if f.Type != FrameHelloAck {
		return nil, HelloAck{}, protocolErrorf("answer to hello is %s", f.Type)
	}
	var ack HelloAck
	if err := decodeControl(f.Payload, &ack); err != nil {
		return nil, ack, err
	}
	if ack.Version < 1 || ack.Version > Version {
		return nil, ack, protocolErrorf("host chose version %d", ack.Version)
	}
	s := newSession(conn, false, ack.Version, cfg, handler)
	s.start(br)
	return s, ack, nil
}

func newSession(conn io.ReadWriteCloser, host bool, version int, cfg Config, handler Handler) *Session {
	return &Session{
		conn:    conn,
		host:    host,
		version: version,
		cfg:     cfg.withDefaults(),
		handler: handler,
		ctrl:    make(chan Frame, 1024),
		opening: make(chan struct{}, 1),
		writes:  make(chan writeReq),
		stopped: make(chan struct{}),
		streams: make(map[uint32]*Stream),
		pings:   make(map[uint64]chan struct{}),
	}
}

func (s *Session) start(br *bufio.Reader) {
	go s.readLoop(br)
	go s.writeLoop()
}

// Version is the protocol version agreed at the handshake.
func (s *Session) Version() int { return s.version }

// Done is closed when the session has ended.
func (s *Session) Done() <-chan struct{} { return s.stopped }

// Err says why the session ended; nil while it runs.
func (s *Session) Err() error {
	select {
	case <-s.stopped:
		return s.err
	default:
		return nil
	}
}

// Close ends the session and every stream on it.
func (s *Session) Close() error {
	s.fail(ErrSessionClosed)
	return nil
}

func (s *Session) fail(err error) {
	s.errOnce.Do(func() {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("%w: the peer hung up", ErrSessionClosed)
		}
		s.err = err
		close(s.stopped)
		s.conn.Close()
		s.mu.Lock()
		streams := s.streams
		s.streams = map[uint32]*Stream{}
		s.mu.Unlock()
		for _, st := range streams {
			st.mu.Lock()
			st.endLocked()
			st.mu.Unlock()
			st.wake()
		}
	})
}

func (s *Session) readLoop(br *bufio.Reader) {
	for {
		f, err := ReadFrame(br)
		if err == nil {
			err = s.dispatch(f)
		}
		if err != nil {
			s.fail(err)
			return
		}
	}
}

func (s *Session) writeLoop() {
	var buf []byte
	write := func(f Frame) error {
		buf = AppendFrame(buf[:0], f)
		_, err := s.conn.Write(buf)
		return err
	}
	for {
		// Control frames first: they unblock the peer.
		select {
		case f := <-s.ctrl:
			if err := write(f); err != nil {
				s.fail(err)
				return
			}
			continue
		default:
		}
		select {
		case f := <-s.ctrl:
			if err := write(f); err != nil {
				s.fail(err)
				return
			}
		case req := <-s.writes:
			_, err := s.conn.Write(req.b)
			req.done <- err
			if err != nil {
				s.fail(err)
				return
			}
		case <-s.stopped:
			return
		}
	}
}

// send writes f in order with other stream frames and waits until it is
// written or ctx ends: a peer that stops reading must not hold the caller
// past its deadline. queued says whether the write loop took f, which it
// then writes even if send gave up waiting. f is encoded here, so nothing
// of it is used after send returns.
func (s *Session) send(ctx context.Context, f Frame) (queued bool, err error) {
	req := writeReq{b: AppendFrame(nil, f), done: make(chan error, 1)}
	select {
	case s.writes <- req:
	case <-ctx.Done():
		return false, ctx.Err()
	case <-s.stopped:
		return false, s.err
	}
	select {
	case err := <-req.done:
		return true, err
	case <-ctx.Done():
		return true, ctx.Err()
	case <-s.stopped:
		return true, s.err
	}
}

// sendCtrl queues a frame that must not wait: the read loop's answers,
// window credit and the frames that end a stream. They go out before
// stream frames not yet taken by the write loop. A peer that leaves the
// queue full is not reading at all, and the session ends.
func (s *Session) sendCtrl(f Frame) error {
	select {
	case s.ctrl <- f:
		return nil
	default:
		err := protocolErrorf("the peer sends control frames faster than it reads")
		s.fail(err)
		return err
	}
}

func (s *Session) dispatch(f Frame) error {
	switch f.Type {
	case FrameHello, FrameHelloAck:
		return protocolErrorf("%s after the handshake", f.Type)
	case FramePing:
		return s.sendCtrl(Frame{Type: FramePong, Payload: f.Payload})
	case FramePong:
		token := binary.BigEndian.Uint64(f.Payload)
		s.mu.Lock()
		ch := s.pings[token]
		delete(s.pings, token)
		sent := token != 0 && token <= s.pingNext
		s.mu.Unlock()
		if !sent {
			return protocolErrorf("pong for a ping never sent")
		}
		if ch != nil { // nil: the pinger gave up already
			close(ch)
		}
		return nil
	case FrameOpen:
		return s.acceptStream(f)
	}
	s.mu.Lock()
	st := s.streams[f.Stream]
	known := f.Stream%2 == 1 && f.Stream <= s.lastID // the host opens odd ids only
	s.mu.Unlock()
	if st == nil {
		if known {
			// A stream this side already ended; frames in flight are dropped.
			return nil
		}
		return protocolErrorf("%s frame for stream %d that was never opened", f.Type, f.Stream)
	}
	return st.receive(f)
}

func (s *Session) acceptStream(f Frame) error {
	if s.host {
		return protocolErrorf("the guest may not open streams")
	}
	var open Open
	if err := decodeControl(f.Payload, &open); err != nil {
		return err
	}
	s.mu.Lock()
	if f.Stream%2 != 1 || f.Stream <= s.lastID {
		s.mu.Unlock()
		return protocolErrorf("open of stream %d out of sequence", f.Stream)
	}
	if len(s.streams) >= s.cfg.MaxStreams {
		s.mu.Unlock()
		return protocolErrorf("more than %d streams open", s.cfg.MaxStreams)
	}
	st := s.newStreamLocked(f.Stream)
	s.mu.Unlock()
	go s.handler(st, open)
	return nil
}

func (s *Session) newStreamLocked(id uint32) *Stream {
	st := &Stream{
		s:         s,
		id:        id,
		recvAvail: s.cfg.Window,
		sendAvail: s.cfg.Window,
		recvWake:  make(chan struct{}, 1),
		sendWake:  make(chan struct{}, 1),
		endCh:     make(chan struct{}),
	}
	s.streams[id] = st
	if id > s.lastID {
		s.lastID = id
	}
	return st
}

func (s *Session) removeStream(id uint32) {
	s.mu.Lock()
	delete(s.streams, id)
	s.mu.Unlock()
}

// Open starts a stream for op with body as its JSON request. Only the host
// opens streams.
func (s *Session) Open(ctx context.Context, op Op, body any) (*Stream, error) {
	if !s.host {
		return nil, errors.New("only the host opens streams")
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	payload, err := json.Marshal(Open{Op: op, Body: raw})
	if err != nil {
		return nil, err
	}
	if len(payload) > MaxControlPayload {
		return nil, fmt.Errorf("%s request of %d bytes exceeds the %d-byte bound", op, len(payload), MaxControlPayload)
	}
	// The guest takes opens in increasing id order only: concurrent opens
	// must reach the write loop in the order their ids were chosen.
	select {
	case s.opening <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.stopped:
		return nil, s.err
	}
	defer func() { <-s.opening }()
	s.mu.Lock()
	if s.Err() != nil {
		s.mu.Unlock()
		return nil, s.err
	}
	if len(s.streams) >= s.cfg.MaxStreams {
		s.mu.Unlock()
		return nil, fmt.Errorf("more than %d agent streams open", s.cfg.MaxStreams)
	}
	// Ids only grow, so the guest can tell a new stream from a late frame
	// of a closed one. 2^31 opens is years of a busy session; at the end
	// the session refuses new streams rather than wrap.
	if s.lastID >= math.MaxUint32-2 {
		s.mu.Unlock()
		return nil, errors.New("the agent session has used all its stream ids; restart the machine")
	}
	id := s.lastID + 1
	if id%2 == 0 {
		id++
	}
	st := s.newStreamLocked(id)
	s.mu.Unlock()
	if queued, err := s.send(ctx, Frame{Type: FrameOpen, Stream: id, Payload: payload}); err != nil {
		if queued {
			// The guest will see the open: make it drop the stream.
			st.Close()
		}
		s.removeStream(id)
		return nil, err
	}
	return st, nil
}

// Ping measures a round trip through the agent's read loop.
func (s *Session) Ping(ctx context.Context) (time.Duration, error) {
	s.mu.Lock()
	s.pingNext++
	token := s.pingNext
	ch := make(chan struct{})
	s.pings[token] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.pings, token)
		s.mu.Unlock()
	}()
	start := time.Now()
	if _, err := s.send(ctx, Frame{Type: FramePing, Payload: binary.BigEndian.AppendUint64(nil, token)}); err != nil {
		return 0, err
	}
	select {
	case <-ch:
		return time.Since(start), nil
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-s.stopped:
		return 0, s.err
	}
}
