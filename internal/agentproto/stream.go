package agentproto

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Message is one item received on a stream, in the order it was sent.
type Message struct {
	Type    FrameType // FrameData or FrameEvent
	Channel uint8     // for FrameData
	Data    []byte    // data bytes, or the event's JSON
}

// Stream is one operation on a session: a request, data in both directions
// on numbered channels, and JSON events. One goroutine may receive and
// several may send at a time.
type Stream struct {
	s  *Session
	id uint32

	sendMu sync.Mutex // one sender waits for window at a time

	mu           sync.Mutex
	inbox        []Message
	inboxEvents  int
	recvAvail    int // data the peer may still send
	consumed     int // data read but not yet credited back
	sendAvail    int // data this side may still send
	remoteClosed bool
	localClosed  bool
	ended        bool // reset by either side, or both sides closed
	resetErr     error
	recvWake     chan struct{}
	sendWake     chan struct{}
	endCh        chan struct{} // closed when ended becomes true
}

// Done is closed when the stream has ended: aborted by either side, or
// closed by both. A guest handler watches it to stop work the host gave up.
func (st *Stream) Done() <-chan struct{} { return st.endCh }

func (st *Stream) endLocked() {
	if !st.ended {
		st.ended = true
		close(st.endCh)
	}
}

// ID is the stream's id on the wire.
func (st *Stream) ID() uint32 { return st.id }

func (st *Stream) wake() {
	select {
	case st.recvWake <- struct{}{}:
	default:
	}
	select {
	case st.sendWake <- struct{}{}:
	default:
	}
}

// receive handles a frame for this stream from the read loop.
func (st *Stream) receive(f Frame) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	defer st.wake()
	if st.ended {
		return nil
	}
	switch f.Type {
	case FrameData, FrameEvent:
		if st.remoteClosed {
			return protocolErrorf("%s frame on stream %d after close", f.Type, st.id)
		}
		if f.Type == FrameData {
			if len(f.Payload) == 0 {
				// It costs no window, so queuing it would let the peer
				// grow the queue without bound.
				return nil
			}
			if len(f.Payload) > st.recvAvail {
				return protocolErrorf("stream %d: %d data bytes beyond the window of %d", st.id, len(f.Payload), st.recvAvail)
			}
			st.recvAvail -= len(f.Payload)
		} else {
			if st.inboxEvents >= st.s.cfg.MaxQueuedEvents {
				return protocolErrorf("stream %d: more than %d unread events", st.id, st.s.cfg.MaxQueuedEvents)
			}
			if !json.Valid(f.Payload) {
				return protocolErrorf("stream %d: event is not JSON", st.id)
			}
			st.inboxEvents++
		}
		st.inbox = append(st.inbox, Message{Type: f.Type, Channel: f.Flags, Data: f.Payload})
	case FrameWindow:
		n := int(binary.BigEndian.Uint32(f.Payload))
		if n > 1<<30 || st.sendAvail+n > 1<<30 {
			return protocolErrorf("stream %d: window grows beyond 1 GiB", st.id)
		}
		st.sendAvail += n
	case FrameClose:
		if st.remoteClosed {
			return protocolErrorf("stream %d closed twice", st.id)
		}
		st.remoteClosed = true
		st.maybeEndLocked()
	case FrameReset:
		e := &Error{}
		if json.Unmarshal(f.Payload, e) != nil || e.Message == "" {
			e = &Error{Code: CodeInternal, Message: "the agent aborted the operation"}
		}
		e.Message = truncate(e.Message, 4096)
		e.Code = truncate(e.Code, 64)
		st.resetErr = e
		st.endLocked()
		st.s.removeStream(st.id)
	default:
		return protocolErrorf("%s frame on stream %d", f.Type, st.id)
	}
	return nil
}

func (st *Stream) maybeEndLocked() {
	if st.remoteClosed && st.localClosed && !st.ended {
		st.endLocked()
		st.s.removeStream(st.id)
	}
}

// Recv returns the next message. It returns io.EOF once the peer closed its
// side and everything was read, an *Error when the peer aborted the stream,
// and the session's error when the session ended.
func (st *Stream) Recv(ctx context.Context) (Message, error) {
	for {
		st.mu.Lock()
		if len(st.inbox) > 0 {
			m := st.inbox[0]
			st.inbox[0] = Message{}
			st.inbox = st.inbox[1:]
			var credit int
			if m.Type == FrameData {
				st.consumed += len(m.Data)
				if st.consumed >= st.s.cfg.Window/4 || len(st.inbox) == 0 {
					credit = st.consumed
					st.recvAvail += credit
					st.consumed = 0
				}
			} else {
				st.inboxEvents--
			}
			ended := st.ended
			st.mu.Unlock()
			if credit > 0 && !ended {
				st.s.sendCtrl(Frame{Type: FrameWindow, Stream: st.id, Payload: binary.BigEndian.AppendUint32(nil, uint32(credit))})
			}
			return m, nil
		}
		if st.resetErr != nil {
			err := st.resetErr
			st.mu.Unlock()
			return Message{}, err
		}
		if st.remoteClosed {
			st.mu.Unlock()
			return Message{}, io.EOF
		}
		st.mu.Unlock()
		select {
		case <-st.recvWake:
		case <-ctx.Done():
			return Message{}, ctx.Err()
		case <-st.s.stopped:
			st.mu.Lock()
			pending := len(st.inbox) > 0
			st.mu.Unlock()
			if !pending {
				return Message{}, st.s.err
			}
		}
	}
}

// RecvEvent receives the next message, which must be an event, into v.
func (st *Stream) RecvEvent(ctx context.Context, v any) error {
	m, err := st.Recv(ctx)
	if err != nil {
		return err
	}
	if m.Type != FrameEvent {
		return protocolErrorf("stream %d: got %s, want an event", st.id, m.Type)
	}
	return decodeControl(m.Data, v)
}

// Write sends p on ChannelStdin, so a Stream can be an io.Writer.
func (st *Stream) Write(p []byte) (int, error) {
	return st.SendData(context.Background(), ChannelStdin, p)
}

// SendData sends p on channel ch, waiting for window as needed.
func (st *Stream) SendData(ctx context.Context, ch uint8, p []byte) (int, error) {
	st.sendMu.Lock()
	defer st.sendMu.Unlock()
	sent := 0
	for sent < len(p) {
		st.mu.Lock()
		if err := st.sendableLocked(); err != nil {
			st.mu.Unlock()
			return sent, err
		}
		n := min(st.sendAvail, len(p)-sent, MaxPayload)
		if n == 0 {
			st.mu.Unlock()
			select {
			case <-st.sendWake:
			case <-ctx.Done():
				return sent, ctx.Err()
			case <-st.s.stopped:
				return sent, st.s.err
			}
			continue
		}
		st.sendAvail -= n
		st.mu.Unlock()
		queued, err := st.s.send(ctx, Frame{Type: FrameData, Stream: st.id, Flags: ch, Payload: p[sent : sent+n]})
		if queued {
			sent += n
		}
		if err != nil {
			return sent, err
		}
	}
	return sent, nil
}

func (st *Stream) sendableLocked() error {
	switch {
	case st.resetErr != nil:
		return st.resetErr
	case st.s.Err() != nil:
		return st.s.err
	case st.localClosed || st.ended:
		return errors.New("send on a closed stream")
	}
	return nil
}

// SendEvent sends v as a JSON event.
func (st *Stream) SendEvent(v any) error {
	payload, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(payload) > MaxControlPayload {
		return fmt.Errorf("event of %d bytes exceeds the %d-byte bound", len(payload), MaxControlPayload)
	}
	st.sendMu.Lock()
	defer st.sendMu.Unlock()
	st.mu.Lock()
	err = st.sendableLocked()
	st.mu.Unlock()
	if err != nil {
		return err
	}
	_, err = st.s.send(context.Background(), Frame{Type: FrameEvent, Stream: st.id, Payload: payload})
	return err
}

// CloseSend tells the peer this side sends nothing more.
func (st *Stream) CloseSend() error {
	st.sendMu.Lock()
	defer st.sendMu.Unlock()
	st.mu.Lock()
	if st.localClosed || st.ended {
		st.mu.Unlock()
		return nil
	}
	st.localClosed = true
	st.mu.Unlock()
	// Every frame this side sent on the stream is already with the write
	// loop (sendMu is held), so the close cannot overtake one, and it does
	// not wait on a peer that stopped reading.
	err := st.s.sendCtrl(Frame{Type: FrameClose, Stream: st.id})
	st.mu.Lock()
	st.maybeEndLocked()
	st.mu.Unlock()
	return err
}

// Abort ends the stream at once and tells the peer why.
func (st *Stream) Abort(e *Error) error {
	if e == nil {
		e = &Error{Code: CodeCancelled, Message: "the operation was cancelled"}
	}
	st.mu.Lock()
	if st.ended {
		st.mu.Unlock()
		return nil
	}
	st.endLocked()
	if st.resetErr == nil {
		st.resetErr = e
	}
	st.mu.Unlock()
	st.s.removeStream(st.id)
	st.wake()
	// The peer drops a reset over the control bound with the session, and
	// keeps no more than this of the message anyway.
	payload, _ := json.Marshal(&Error{Code: truncate(e.Code, 64), Message: truncate(e.Message, 4096)})
	// A reset may overtake the stream's queued data, which the peer then
	// drops, and it does not wait on a peer that stopped reading.
	return st.s.sendCtrl(Frame{Type: FrameReset, Stream: st.id, Payload: payload})
}

// Close releases the stream: if it has not ended cleanly it is aborted.
func (st *Stream) Close() error {
	st.mu.Lock()
	ended := st.ended
	st.mu.Unlock()
	if ended {
		return nil
	}
	return st.Abort(&Error{Code: CodeCancelled, Message: "the operation was cancelled"})
}
