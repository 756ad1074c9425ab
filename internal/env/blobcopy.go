package env

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"sync"
)

const (
	copyChunk   = 1 << 20 // bytes per read
	copyBuffers = 4       // chunks in flight between reader and writer
	holeBlock   = 4096    // an all-zero block of this size becomes a hole
)

var zeroBlock [holeBlock]byte

// copySparse copies src into f, an empty file, and returns the bytes
// copied. One goroutine reads (and so drives the digest check that
// go-containerregistry's reader does as it reads) while the caller's
// goroutine writes: on a multi-core host hashing and writing overlap.
// All-zero blocks are left as holes: a root filesystem image has many, and
// skipping them saves both the writes and the disk space.
func copySparse(ctx context.Context, f *os.File, src io.Reader, progress func(int64)) (int64, error) {
	type chunk struct {
		buf []byte
		n   int
	}
	free := make(chan []byte, copyBuffers)
	for range copyBuffers {
		free <- make([]byte, copyChunk)
	}
	full := make(chan chunk, copyBuffers)
	stop := make(chan struct{})
	var readErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(full)
		for {
			var buf []byte
			select {
			case buf = <-free:
			case <-stop:
				return
			}
			n, err := io.ReadFull(src, buf)
			if n > 0 {
				full <- chunk{buf, n}
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return
			}
			if err != nil {
				readErr = err
				return
			}
		}
	}()
	// The reader must be gone before the caller closes src.
	finish := func() {
		close(stop)
		for range full {
		}
		wg.Wait()
	}

	var off int64
	for c := range full {
		if err := ctx.Err(); err != nil {
			finish()
			return off, err
		}
		if err := writeSparse(f, c.buf[:c.n], off); err != nil {
			finish()
			return off, err
		}
		off += int64(c.n)
		free <- c.buf
		if progress != nil {
			progress(off)
		}
	}
	wg.Wait()
	if readErr != nil {
		return off, readErr
	}
	// Trailing holes still count in the file's size.
	if err := f.Truncate(off); err != nil {
		return off, err
	}
	return off, nil
}

// writeSparse writes p at off, skipping the holeBlock-aligned blocks that
// are all zero. f must read as zeros where nothing was written.
func writeSparse(f *os.File, p []byte, off int64) error {
	start := -1 // start of the pending run of data blocks
	flush := func(end int) error {
		if start < 0 {
			return nil
		}
		_, err := f.WriteAt(p[start:end], off+int64(start))
		start = -1
		return err
	}
	for i := 0; i < len(p); i += holeBlock {
		end := min(i+holeBlock, len(p))
		// Only whole, aligned blocks become holes; a short tail is data.
		zero := end-i == holeBlock && (off+int64(i))%holeBlock == 0 && bytes.Equal(p[i:end], zeroBlock[:])
		if zero {
			if err := flush(i); err != nil {
				return err
			}
			continue
		}
		if start < 0 {
			start = i
		}
	}
	return flush(len(p))
}
