package agentproto

import (
	"context"
	"io"
)

// DataReader returns a reader of the data the peer sends on channel ch,
// which ends (io.EOF) when the peer closes its side. An event arriving in
// between is a protocol error: operations that stream data send their
// result event only after closing the data, or on another stream.
func (st *Stream) DataReader(ctx context.Context, ch uint8) io.Reader {
	return &dataReader{ctx: ctx, st: st, ch: ch}
}

type dataReader struct {
	ctx  context.Context
	st   *Stream
	ch   uint8
	rest []byte
	err  error
}

func (r *dataReader) Read(p []byte) (int, error) {
	for len(r.rest) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		m, err := r.st.Recv(r.ctx)
		if err != nil {
			r.err = err
			return 0, err
		}
		if m.Type != FrameData || m.Channel != r.ch {
			r.err = protocolErrorf("stream %d: %s on channel %d while reading channel %d", r.st.id, m.Type, m.Channel, r.ch)
			return 0, r.err
		}
		r.rest = m.Data
	}
	n := copy(p, r.rest)
	r.rest = r.rest[n:]
	return n, nil
}

// DataWriter returns a writer that sends on channel ch.
func (st *Stream) DataWriter(ctx context.Context, ch uint8) io.Writer {
	return &dataWriter{ctx: ctx, st: st, ch: ch}
}

type dataWriter struct {
	ctx context.Context
	st  *Stream
	ch  uint8
}

func (w *dataWriter) Write(p []byte) (int, error) { return w.st.SendData(w.ctx, w.ch, p) }
