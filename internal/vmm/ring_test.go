package vmm

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
)

func TestRingKeepsTail(t *testing.T) {
	for _, size := range []int{1, 7, 64, 1000} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			r := &Ring{Size: size}
			var all []byte
			// Writes of every length around the size: smaller, equal, larger.
			for i := 0; i < 300; i++ {
				n := (i * 37) % (3*size + 2)
				p := make([]byte, n)
				for j := range p {
					p[j] = byte(len(all) + j)
				}
				m, err := r.Write(p)
				if err != nil || m != n {
					t.Fatalf("Write(%d bytes) = %d, %v", n, m, err)
				}
				all = append(all, p...)
				want := all[max(0, len(all)-size):]
				if got := r.Bytes(); !bytes.Equal(got, want) {
					t.Fatalf("after %d bytes: kept %d bytes %x, want %d bytes %x", len(all), len(got), got, len(want), want)
				}
			}
		})
	}
}

func TestRingDefaultSize(t *testing.T) {
	var r Ring
	big := bytes.Repeat([]byte("0123456789abcdef"), 10<<10) // 160 KiB
	r.Write(big)
	r.Write([]byte("end"))
	got := r.Bytes()
	if len(got) != 64<<10 {
		t.Fatalf("zero Ring kept %d bytes, want %d", len(got), 64<<10)
	}
	if !bytes.HasSuffix(got, []byte("end")) {
		t.Errorf("zero Ring lost the last write")
	}
}

func TestRingBytesIsACopy(t *testing.T) {
	r := &Ring{Size: 8}
	r.Write([]byte("abcdefgh"))
	b := r.Bytes()
	b[0] = 'X'
	if got := r.String(); got != "abcdefgh" {
		t.Errorf("String = %q after changing a copy", got)
	}
	// A write larger than the ring does not keep a reference to the caller's slice.
	p := []byte("0123456789")
	r.Write(p)
	p[9] = 'X'
	if got := r.String(); got != "23456789" {
		t.Errorf("String = %q, want 23456789", got)
	}
}

func TestRingConcurrentWrites(t *testing.T) {
	r := &Ring{Size: 100}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 1000 {
				r.Write(bytes.Repeat([]byte{byte('a' + i)}, 10))
			}
		})
	}
	wg.Wait()
	got := r.Bytes()
	if len(got) != 100 {
		t.Fatalf("kept %d bytes, want 100", len(got))
	}
	// Writes are atomic: the tail is whole 10-byte runs.
	for i := 0; i < len(got); i += 10 {
		if !bytes.Equal(got[i:i+10], bytes.Repeat(got[i:i+1], 10)) {
			t.Fatalf("interleaved write in %q", got)
		}
	}
}
