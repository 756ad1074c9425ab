package pyro

import (
	"io"
	"sync"
)

// capturedOutput keeps the first limit bytes written to it, counts all of
// them, and passes what it keeps on to an optional live writer. The guest
// is untrusted: its own output limit is not relied on.
type capturedOutput struct {
	mu    sync.Mutex
	limit int64
	buf   []byte
	total int64
	live  io.Writer
}

func (c *capturedOutput) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(p)
	room := c.limit - int64(len(c.buf))
	if room > 0 {
		keep := p
		if int64(len(keep)) > room {
			keep = keep[:room]
		}
		c.buf = append(c.buf, keep...)
		if c.live != nil {
			c.live.Write(keep)
		}
	}
	c.total += int64(n)
	return n, nil
}

func (c *capturedOutput) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.buf)
}

// truncated says output was dropped: more was written than kept, or the
// guest reports more than it sent.
func (c *capturedOutput) truncated(guestTotal int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total > int64(len(c.buf)) || guestTotal > int64(len(c.buf))
}
