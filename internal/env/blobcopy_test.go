package env

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// pattern returns size bytes of runs of zeros and of random data, with
// run lengths that are not multiples of the hole block.
func pattern(seed uint64, size int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	p := make([]byte, size)
	for i := 0; i < size; {
		n := min(size-i, 1+r.IntN(3*holeBlock))
		if r.IntN(2) == 0 {
			for j := i; j < i+n; j++ {
				p[j] = byte(1 + r.IntN(255))
			}
		}
		i += n
	}
	return p
}

func copyToTemp(t *testing.T, ctx context.Context, src io.Reader) (string, int64, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "blob")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var last int64
	n, err := copySparse(ctx, f, src, func(n int64) {
		if n < last {
			t.Errorf("progress went back from %d to %d", last, n)
		}
		last = n
	})
	return path, n, err
}

func TestCopySparseKeepsBytes(t *testing.T) {
	sizes := []int{0, 1, holeBlock - 1, holeBlock, holeBlock + 1, copyChunk - 7, copyChunk, 3*copyChunk + 12345, 9 * copyChunk}
	for i, size := range sizes {
		want := pattern(uint64(i), size)
		// An odd read size makes chunks that do not start on a block.
		path, n, err := copyToTemp(t, context.Background(), io.LimitReader(&oddReader{r: bytes.NewReader(want)}, int64(size)))
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if n != int64(size) || !bytes.Equal(got, want) {
			t.Fatalf("size %d: copied %d bytes, content equal %v", size, n, bytes.Equal(got, want))
		}
	}
}

type oddReader struct{ r io.Reader }

func (o *oddReader) Read(p []byte) (int, error) { return o.r.Read(p[:min(len(p), 777777)]) }

func TestCopySparseMakesHoles(t *testing.T) {
	const size = 8 * copyChunk
	want := make([]byte, size)
	copy(want[size/2:], bytes.Repeat([]byte{7}, holeBlock)) // one data block
	want[size-1] = 1                                        // and a last one
	path, _, err := copyToTemp(t, context.Background(), bytes.NewReader(want))
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != size {
		t.Fatalf("size %d, want %d", st.Size, size)
	}
	if allocated := st.Blocks * 512; allocated > 1<<20 {
		t.Errorf("%d bytes allocated for two data blocks: zeros were written, not skipped", allocated)
	}
	got, _ := os.ReadFile(path)
	if !bytes.Equal(got, want) {
		t.Fatal("content differs")
	}
}

func TestCopySparseTrailingHole(t *testing.T) {
	want := append(bytes.Repeat([]byte{9}, 10), make([]byte, 3*holeBlock)...)
	path, _, err := copyToTemp(t, context.Background(), bytes.NewReader(want))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes, want %d", len(got), len(want))
	}
}

type failingReader struct {
	n   int
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	n := min(len(p), f.n)
	for i := range p[:n] {
		p[i] = 1
	}
	f.n -= n
	return n, nil
}

func TestCopySparseReadError(t *testing.T) {
	boom := errors.New("digest mismatch")
	_, _, err := copyToTemp(t, context.Background(), &failingReader{n: 5*copyChunk + 3, err: boom})
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want the reader's error", err)
	}
}

func TestCopySparseCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := copyToTemp(t, ctx, &failingReader{n: 64 * copyChunk, err: io.EOF})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

func TestCopySparseWriteError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "blob")
	os.WriteFile(path, nil, 0o644)
	f, err := os.Open(path) // read-only: every write fails
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	src := &failingReader{n: 64 * copyChunk, err: io.EOF}
	if _, err := copySparse(context.Background(), f, src, nil); err == nil {
		t.Fatal("a copy into a read-only file succeeded")
	}
}
