// Package agentproto is the wire protocol between pyro on the host and its
// agent inside the guest.
//
// One byte stream (a virtio-serial port, a vsock connection or a socketpair)
// carries frames. Each frame has a fixed 12-byte header and a bounded
// payload:
//
//	0..3   payload length, big endian (at most MaxPayload)
//	4..7   stream id, big endian (0 is the session itself)
//	8      frame type
//	9      flags (the data channel for FrameData)
//	10..11 reserved, zero
//
// The guest speaks first: a FrameHello on stream 0 says the agent is ready
// and which protocol versions it speaks, so the host never polls. The host
// answers with FrameHelloAck naming the version both use. After that the
// host opens streams (odd ids) with FrameOpen; each stream carries data on
// numbered channels (stdin, stdout, stderr) under credit-based flow control,
// JSON events, and ends with FrameClose from each side or a FrameReset.
//
// Rules for evolving the protocol: the header layout never changes; a new
// version may add frame types, channels and JSON fields, never change the
// meaning of existing ones. A peer that receives a frame type it does not
// know for the agreed version treats it as a protocol error. Every field of
// every frame from the guest is untrusted: the host checks each bound before
// using it and tears the session down on the first violation.
package agentproto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Version is the newest protocol version this build speaks.
const Version = 1

const (
	// HeaderSize is the size of a frame header.
	HeaderSize = 12
	// MaxPayload bounds every frame's payload. A frame announcing more is a
	// protocol error, so a peer can never make the other allocate more.
	MaxPayload = 64 << 10
	// MaxControlPayload bounds JSON payloads (hello, open, event, reset).
	MaxControlPayload = 32 << 10
)

// FrameType says what a frame carries.
type FrameType uint8

// Frame types of protocol version 1.
const (
	FrameHello    FrameType = 1  // guest → host, stream 0: agent ready, JSON Hello
	FrameHelloAck FrameType = 2  // host → guest, stream 0: JSON HelloAck
	FrameOpen     FrameType = 3  // host → guest: opens a stream, JSON Open
	FrameData     FrameType = 4  // data on channel Flags, flow controlled
	FrameEvent    FrameType = 5  // JSON event on a stream
	FrameWindow   FrameType = 6  // 4-byte credit for FrameData on a stream
	FrameClose    FrameType = 7  // the sender sends nothing more on the stream
	FrameReset    FrameType = 8  // the stream is aborted, JSON Error
	FramePing     FrameType = 9  // stream 0, 8-byte token
	FramePong     FrameType = 10 // stream 0, the ping's token
)

func (t FrameType) String() string {
	switch t {
	case FrameHello:
		return "hello"
	case FrameHelloAck:
		return "hello-ack"
	case FrameOpen:
		return "open"
	case FrameData:
		return "data"
	case FrameEvent:
		return "event"
	case FrameWindow:
		return "window"
	case FrameClose:
		return "close"
	case FrameReset:
		return "reset"
	case FramePing:
		return "ping"
	case FramePong:
		return "pong"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Data channels (FrameData flags).
const (
	ChannelStdin  uint8 = 0
	ChannelStdout uint8 = 1
	ChannelStderr uint8 = 2
)

// Frame is one decoded frame. Payload is owned by the frame.
type Frame struct {
	Type    FrameType
	Flags   uint8
	Stream  uint32
	Payload []byte
}

// ErrProtocol marks a peer that broke the protocol. The session that sees
// it is torn down: a peer that lies once is not trusted again.
var ErrProtocol = errors.New("agent protocol violation")

func protocolErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}

// ReadFrame reads one frame and checks everything that can be checked
// without session state: the reserved bytes, the frame type, the payload
// bound for the type and the stream-0 rules.
func ReadFrame(r io.Reader) (Frame, error) {
	var hdr [HeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return Frame{}, err
	}
	f := Frame{
		Stream: binary.BigEndian.Uint32(hdr[4:8]),
		Type:   FrameType(hdr[8]),
		Flags:  hdr[9],
	}
	n := binary.BigEndian.Uint32(hdr[0:4])
	if hdr[10] != 0 || hdr[11] != 0 {
		return Frame{}, protocolErrorf("reserved header bytes are not zero")
	}
	if err := checkFrameShape(f.Type, f.Flags, f.Stream, n); err != nil {
		return Frame{}, err
	}
	if n > 0 {
		f.Payload = make([]byte, n)
		if _, err := io.ReadFull(r, f.Payload); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return Frame{}, err
		}
	}
	return f, nil
}

func checkFrameShape(t FrameType, flags uint8, stream uint32, n uint32) error {
	if n > MaxPayload {
		return protocolErrorf("%s frame of %d bytes exceeds the %d-byte bound", t, n, MaxPayload)
	}
	onSession := t == FrameHello || t == FrameHelloAck || t == FramePing || t == FramePong
	if onSession != (stream == 0) {
		return protocolErrorf("%s frame on stream %d", t, stream)
	}
	switch t {
	case FrameHello, FrameHelloAck, FrameOpen, FrameEvent, FrameReset:
		if n > MaxControlPayload {
			return protocolErrorf("%s frame of %d bytes exceeds the %d-byte control bound", t, n, MaxControlPayload)
		}
	case FrameData:
		if flags > ChannelStderr {
			return protocolErrorf("data frame on unknown channel %d", flags)
		}
		return nil
	case FrameWindow:
		if n != 4 {
			return protocolErrorf("window frame of %d bytes, want 4", n)
		}
	case FrameClose:
		if n != 0 {
			return protocolErrorf("close frame with a %d-byte payload", n)
		}
	case FramePing, FramePong:
		if n != 8 {
			return protocolErrorf("%s frame of %d bytes, want 8", t, n)
		}
	default:
		return protocolErrorf("unknown frame type %d", uint8(t))
	}
	if flags != 0 {
		return protocolErrorf("%s frame with flags %#x", t, flags)
	}
	return nil
}

// AppendFrame appends the encoding of f to b.
func AppendFrame(b []byte, f Frame) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(f.Payload)))
	b = binary.BigEndian.AppendUint32(b, f.Stream)
	b = append(b, byte(f.Type), f.Flags, 0, 0)
	return append(b, f.Payload...)
}
