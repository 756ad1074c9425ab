package agentproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
)

// rawHeader builds a frame header with every field under the test's
// control, including the ones AppendFrame always gets right.
func rawHeader(n uint32, stream uint32, t FrameType, flags uint8, r0, r1 byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, n)
	b = binary.BigEndian.AppendUint32(b, stream)
	return append(b, byte(t), flags, r0, r1)
}

func TestFrameRoundTrip(t *testing.T) {
	token := binary.BigEndian.AppendUint64(nil, 0x0102030405060708)
	frames := []Frame{
		{Type: FrameHello, Payload: []byte(`{"versions":[1],"agent":"test","uptime_ms":5}`)},
		{Type: FrameHelloAck, Payload: []byte(`{"version":1,"unix_nano":1}`)},
		{Type: FrameOpen, Stream: 1, Payload: []byte(`{"op":"exec","body":{"argv":["true"]}}`)},
		{Type: FrameData, Stream: 3, Flags: ChannelStdin, Payload: []byte("stdin bytes")},
		{Type: FrameData, Stream: 3, Flags: ChannelStdout, Payload: bytes.Repeat([]byte{0xff}, MaxPayload)},
		{Type: FrameData, Stream: 3, Flags: ChannelStderr, Payload: []byte{0}},
		{Type: FrameEvent, Stream: 0xfffffffe, Payload: []byte(`{"event":"started","pid":7}`)},
		{Type: FrameWindow, Stream: 5, Payload: binary.BigEndian.AppendUint32(nil, 1<<20)},
		{Type: FrameClose, Stream: 7},
		{Type: FrameReset, Stream: 9, Payload: []byte(`{"code":"cancelled","message":"gone"}`)},
		{Type: FramePing, Payload: token},
		{Type: FramePong, Payload: token},
		// Payload bounds are inclusive.
		{Type: FrameEvent, Stream: 1, Payload: bytes.Repeat([]byte{' '}, MaxControlPayload)},
	}
	var wire []byte
	for _, f := range frames {
		wire = AppendFrame(wire, f)
	}
	r := bytes.NewReader(wire)
	for i, want := range frames {
		got, err := ReadFrame(r)
		if err != nil {
			t.Fatalf("frame %d (%s): %v", i, want.Type, err)
		}
		if got.Type != want.Type || got.Flags != want.Flags || got.Stream != want.Stream || !bytes.Equal(got.Payload, want.Payload) {
			t.Fatalf("frame %d: got %s/%d/%d/%d bytes, want %s/%d/%d/%d bytes",
				i, got.Type, got.Stream, got.Flags, len(got.Payload), want.Type, want.Stream, want.Flags, len(want.Payload))
		}
		if re := AppendFrame(nil, got); !bytes.Equal(re, AppendFrame(nil, want)) {
			t.Fatalf("frame %d does not re-encode to the same bytes", i)
		}
	}
	if _, err := ReadFrame(r); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

func TestAppendFrameLayout(t *testing.T) {
	got := AppendFrame([]byte("prefix"), Frame{Type: FrameData, Flags: ChannelStderr, Stream: 0x01020304, Payload: []byte("xy")})
	want := []byte("prefix\x00\x00\x00\x02\x01\x02\x03\x04\x04\x02\x00\x00xy")
	if !bytes.Equal(got, want) {
		t.Fatalf("AppendFrame = %q, want %q", got, want)
	}
}

func TestReadFrameRejects(t *testing.T) {
	tests := []struct {
		name string
		hdr  []byte
		want string // a piece of the error text
	}{
		{"oversized data", rawHeader(MaxPayload+1, 1, FrameData, ChannelStdout, 0, 0), "exceeds"},
		{"oversized length near 4 GiB", rawHeader(0xffffffff, 1, FrameData, ChannelStdout, 0, 0), "exceeds"},
		{"oversized unknown type", rawHeader(MaxPayload+1, 1, 200, 0, 0, 0), "exceeds"},
		{"hello over the control bound", rawHeader(MaxControlPayload+1, 0, FrameHello, 0, 0, 0), "control bound"},
		{"hello-ack over the control bound", rawHeader(MaxControlPayload+1, 0, FrameHelloAck, 0, 0, 0), "control bound"},
		{"open over the control bound", rawHeader(MaxControlPayload+1, 1, FrameOpen, 0, 0, 0), "control bound"},
		{"event over the control bound", rawHeader(MaxControlPayload+1, 1, FrameEvent, 0, 0, 0), "control bound"},
		{"reset over the control bound", rawHeader(MaxControlPayload+1, 1, FrameReset, 0, 0, 0), "control bound"},
		{"hello on a stream", rawHeader(2, 1, FrameHello, 0, 0, 0), "on stream 1"},
		{"hello-ack on a stream", rawHeader(2, 3, FrameHelloAck, 0, 0, 0), "on stream 3"},
		{"ping on a stream", rawHeader(8, 1, FramePing, 0, 0, 0), "on stream 1"},
		{"pong on a stream", rawHeader(8, 1, FramePong, 0, 0, 0), "on stream 1"},
		{"open on stream 0", rawHeader(2, 0, FrameOpen, 0, 0, 0), "on stream 0"},
		{"data on stream 0", rawHeader(2, 0, FrameData, ChannelStdout, 0, 0), "on stream 0"},
		{"event on stream 0", rawHeader(2, 0, FrameEvent, 0, 0, 0), "on stream 0"},
		{"window on stream 0", rawHeader(4, 0, FrameWindow, 0, 0, 0), "on stream 0"},
		{"close on stream 0", rawHeader(0, 0, FrameClose, 0, 0, 0), "on stream 0"},
		{"reset on stream 0", rawHeader(2, 0, FrameReset, 0, 0, 0), "on stream 0"},
		{"data on channel 3", rawHeader(1, 1, FrameData, 3, 0, 0), "unknown channel 3"},
		{"data on channel 255", rawHeader(1, 1, FrameData, 255, 0, 0), "unknown channel 255"},
		{"short window", rawHeader(3, 1, FrameWindow, 0, 0, 0), "want 4"},
		{"long window", rawHeader(5, 1, FrameWindow, 0, 0, 0), "want 4"},
		{"empty window", rawHeader(0, 1, FrameWindow, 0, 0, 0), "want 4"},
		{"close with payload", rawHeader(1, 1, FrameClose, 0, 0, 0), "payload"},
		{"short ping", rawHeader(7, 0, FramePing, 0, 0, 0), "want 8"},
		{"long ping", rawHeader(9, 0, FramePing, 0, 0, 0), "want 8"},
		{"short pong", rawHeader(0, 0, FramePong, 0, 0, 0), "want 8"},
		{"long pong", rawHeader(16, 0, FramePong, 0, 0, 0), "want 8"},
		{"flags on hello", rawHeader(2, 0, FrameHello, 1, 0, 0), "flags"},
		{"flags on hello-ack", rawHeader(2, 0, FrameHelloAck, 0x80, 0, 0), "flags"},
		{"flags on open", rawHeader(2, 1, FrameOpen, 1, 0, 0), "flags"},
		{"flags on event", rawHeader(2, 1, FrameEvent, 1, 0, 0), "flags"},
		{"flags on window", rawHeader(4, 1, FrameWindow, 2, 0, 0), "flags"},
		{"flags on close", rawHeader(0, 1, FrameClose, 1, 0, 0), "flags"},
		{"flags on reset", rawHeader(2, 1, FrameReset, 1, 0, 0), "flags"},
		{"flags on ping", rawHeader(8, 0, FramePing, 1, 0, 0), "flags"},
		{"flags on pong", rawHeader(8, 0, FramePong, 1, 0, 0), "flags"},
		{"first reserved byte", rawHeader(0, 1, FrameClose, 0, 1, 0), "reserved"},
		{"second reserved byte", rawHeader(0, 1, FrameClose, 0, 0, 0x80), "reserved"},
		{"type 0", rawHeader(0, 1, 0, 0, 0, 0), "unknown frame type 0"},
		{"type 11", rawHeader(0, 1, 11, 0, 0, 0), "unknown frame type 11"},
		{"type 255", rawHeader(0, 1, 255, 0, 0, 0), "unknown frame type 255"},
		{"unknown type on stream 0", rawHeader(0, 0, 11, 0, 0, 0), "stream 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A generous payload follows, so a rejection is never an
			// accident of running out of bytes.
			in := append(append([]byte(nil), tt.hdr...), make([]byte, MaxPayload+16)...)
			r := bytes.NewReader(in)
			f, err := ReadFrame(r)
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("ReadFrame = %+v, %v; want a protocol error", f.Type, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
			// A rejected header must not make the reader consume (or
			// allocate for) the announced payload.
			if consumed := len(in) - r.Len(); consumed != HeaderSize {
				t.Errorf("ReadFrame consumed %d bytes, want only the %d-byte header", consumed, HeaderSize)
			}
		})
	}
}

func TestReadFrameAccepts(t *testing.T) {
	// The edges of each rule, accepted.
	tests := []struct {
		name string
		hdr  []byte
	}{
		{"data at the bound", rawHeader(MaxPayload, 1, FrameData, ChannelStderr, 0, 0)},
		{"empty data", rawHeader(0, 1, FrameData, ChannelStdin, 0, 0)},
		{"event at the control bound", rawHeader(MaxControlPayload, 1, FrameEvent, 0, 0, 0)},
		{"empty hello", rawHeader(0, 0, FrameHello, 0, 0, 0)},
		{"highest stream", rawHeader(4, 0xffffffff, FrameWindow, 0, 0, 0)},
		{"even stream", rawHeader(0, 2, FrameClose, 0, 0, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := binary.BigEndian.Uint32(tt.hdr)
			in := append(append([]byte(nil), tt.hdr...), make([]byte, n)...)
			f, err := ReadFrame(bytes.NewReader(in))
			if err != nil {
				t.Fatal(err)
			}
			if len(f.Payload) != int(n) {
				t.Fatalf("payload of %d bytes, want %d", len(f.Payload), n)
			}
			if !bytes.Equal(AppendFrame(nil, f), in) {
				t.Fatal("does not re-encode to the same bytes")
			}
		})
	}
}

func TestReadFrameTruncated(t *testing.T) {
	whole := AppendFrame(nil, Frame{Type: FrameEvent, Stream: 1, Payload: []byte(`{"event":"exit"}`)})
	if _, err := ReadFrame(bytes.NewReader(nil)); err != io.EOF {
		t.Fatalf("no bytes at all: %v, want io.EOF", err)
	}
	for cut := 1; cut < len(whole); cut++ {
		_, err := ReadFrame(bytes.NewReader(whole[:cut]))
		if err != io.ErrUnexpectedEOF {
			t.Fatalf("frame cut at %d of %d bytes: %v, want io.ErrUnexpectedEOF", cut, len(whole), err)
		}
	}
	// A read error other than EOF comes back as is.
	boom := errors.New("boom")
	_, err := ReadFrame(io.MultiReader(bytes.NewReader(whole[:HeaderSize+2]), iotestErrReader{boom}))
	if err != boom {
		t.Fatalf("reader failing in the payload: %v, want %v", err, boom)
	}
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }

func TestFrameTypeString(t *testing.T) {
	seen := map[string]bool{}
	for ft := FrameHello; ft <= FramePong; ft++ {
		s := ft.String()
		if strings.HasPrefix(s, "type(") || seen[s] {
			t.Errorf("FrameType(%d).String() = %q", ft, s)
		}
		seen[s] = true
	}
	if got := FrameType(42).String(); got != "type(42)" {
		t.Errorf("FrameType(42).String() = %q", got)
	}
}

func TestExecRequestValidate(t *testing.T) {
	long := strings.Repeat("a", maxArgBytes)
	tests := []struct {
		name string
		req  ExecRequest
		want string // "" for valid
	}{
		{"plain", ExecRequest{Argv: []string{"ls", "-l"}, Env: []string{"A=1", "B="}, Cwd: "/tmp"}, ""},
		{"no argv", ExecRequest{}, "empty command"},
		{"empty argv0", ExecRequest{Argv: []string{""}}, "empty command"},
		{"too many args", ExecRequest{Argv: make([]string, maxArgs+1)}, "empty command"},
		{"too many args, named", ExecRequest{Argv: append([]string{"x"}, make([]string, maxArgs)...)}, "too many"},
		{"too many env", ExecRequest{Argv: []string{"x"}, Env: make([]string, maxEnv+1)}, "too many"},
		{"NUL in argument", ExecRequest{Argv: []string{"x", "a\x00b"}}, "NUL"},
		{"NUL in env", ExecRequest{Argv: []string{"x"}, Env: []string{"A=\x00"}}, "NUL"},
		{"env without =", ExecRequest{Argv: []string{"x"}, Env: []string{"PATH"}}, "KEY=VALUE"},
		{"env with empty key", ExecRequest{Argv: []string{"x"}, Env: []string{"=v"}}, "KEY=VALUE"},
		{"too many bytes", ExecRequest{Argv: []string{"x", long}}, "exceed"},
		{"NUL in cwd", ExecRequest{Argv: []string{"x"}, Cwd: "/a\x00"}, "NUL"},
		{"negative timeout", ExecRequest{Argv: []string{"x"}, TimeoutMillis: -1}, "negative"},
		{"negative limit", ExecRequest{Argv: []string{"x"}, OutputLimit: -1}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.req.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate = %v, want an error about %q", err, tt.want)
			}
		})
	}
	// The env key in the message is truncated: untrusted text stays short.
	err := (&ExecRequest{Argv: []string{"x"}, Env: []string{strings.Repeat("k", 1000)}}).Validate()
	if err == nil || len(err.Error()) > 200 {
		t.Fatalf("Validate = %v, want a short error", err)
	}
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly", 7, "exactly"},
		{"abcdef", 3, "abc…"},
		{"héllo", 2, "h…"}, // é would be cut in half
		{"日本語", 4, "日…"},
		{"", 0, ""},
	}
	for _, tt := range tests {
		if got := truncate(tt.in, tt.n); got != tt.want {
			t.Errorf("truncate(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

func TestDecodeControl(t *testing.T) {
	var ev Event
	if err := decodeControl([]byte(`{"event":"exit","exit":{"code":3}}`), &ev); err != nil || ev.Exit == nil || ev.Exit.Code != 3 {
		t.Fatalf("decodeControl = %v, %+v", err, ev)
	}
	for _, bad := range []string{"", "{", `{"event":1}`, `{} {}`, "\xff"} {
		if err := decodeControl([]byte(bad), &ev); !errors.Is(err, ErrProtocol) {
			t.Errorf("decodeControl(%q) = %v, want a protocol error", bad, err)
		}
	}
}
