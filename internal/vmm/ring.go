package vmm

import "sync"

// Ring keeps the last Size bytes written to it. A guest can print without
// end; pyro keeps only the tail for error messages.
type Ring struct {
	Size int

	mu   sync.Mutex
	buf  []byte
	full bool
}

func (r *Ring) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	size := r.Size
	if size <= 0 {
		size = 64 << 10
	}
	n := len(p)
	if len(p) >= size {
		r.buf = append(r.buf[:0], p[len(p)-size:]...)
		r.full = true
		return n, nil
	}
	r.buf = append(r.buf, p...)
	if len(r.buf) > size {
		r.buf = append(r.buf[:0], r.buf[len(r.buf)-size:]...)
		r.full = true
	}
	return n, nil
}

// Bytes returns a copy of the kept tail.
func (r *Ring) Bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]byte(nil), r.buf...)
}

// String returns the kept tail.
func (r *Ring) String() string { return string(r.Bytes()) }
