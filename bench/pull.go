package main

import (
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/pyro-sandbox/pyro/internal/env"
)

// measurePull times a pull of debian:12 from a registry on 127.0.0.1 into
// an empty cache, against copying the same bytes on the same disk, and a
// pull of an installed environment.
func (b *bench) measurePull() error {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	if out, err := exec.Command(b.pyro, "env", "push", "debian:12", host+"/pyro/debian:12-v2").CombinedOutput(); err != nil {
		return fmt.Errorf("push: %v\n%s", err, out)
	}
	cache := &env.Cache{Dir: env.DefaultCacheDir()}
	m, err := cache.Installed("debian:12")
	if err != nil {
		return err
	}
	total := m.Size()
	work, err := os.MkdirTemp(filepath.Dir(cache.Dir), "pyro-bench-pull-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	var pulls, copies, cacheCopies, cached []time.Duration
	for i := 0; i < b.runs; i++ {
		dir := filepath.Join(work, fmt.Sprint("pull", i))
		start := time.Now()
		cmd := exec.Command(b.pyro, "env", "pull", "debian:12", "--registry", host+"/pyro", "--no-build")
		cmd.Env = append(os.Environ(), "PYRO_ENV_CACHE="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("pull: %v\n%s", err, out)
		}
		pulls = append(pulls, time.Since(start))

		// The second pull of the same, installed environment.
		start = time.Now()
		if out, err := cmd2(b.pyro, dir, host).CombinedOutput(); err != nil {
			return fmt.Errorf("cached pull: %v\n%s", err, out)
		}
		cached = append(cached, time.Since(start))
		os.RemoveAll(dir)

		// The same bytes copied file to file on the same disk: durably,
		// as the pull writes them, and into the page cache only.
		for _, durable := range []bool{true, false} {
			dst := filepath.Join(work, fmt.Sprint("copy", i))
			os.MkdirAll(dst, 0o755)
			start = time.Now()
			for _, blob := range m.Blobs() {
				if err := copyFile(cache.BlobPath(blob.Digest), filepath.Join(dst, blob.Digest[7:]), durable); err != nil {
					return err
				}
			}
			if durable {
				copies = append(copies, time.Since(start))
			} else {
				cacheCopies = append(cacheCopies, time.Since(start))
			}
			os.RemoveAll(dst)
		}
	}
	mibs := func(d time.Duration) float64 { return float64(total) / (1 << 20) / d.Seconds() }
	pullRate, copyRate, cacheRate := mibs(median(pulls)), mibs(median(copies)), mibs(median(cacheCopies))
	ratio := pullRate / copyRate
	b.rows = append(b.rows,
		row{fmt.Sprintf("`env pull debian:12` from a registry on 127.0.0.1 (%d MiB, empty cache)", total>>20), fmt.Sprintf("%s (%.0f MiB/s)", minMax(pulls), pullRate), "", ""},
		row{"copy of the same bytes on the same disk, flushed to it (fsync, as the pull does)", fmt.Sprintf("%s (%.0f MiB/s)", minMax(copies), copyRate), "", ""},
		row{"pull throughput ÷ copy throughput", fmt.Sprintf("%.2f", ratio), "≥ 0.5", verdict(ratio >= 0.5)},
		row{"copy into the page cache only (no fsync)", fmt.Sprintf("%s (%.0f MiB/s)", minMax(cacheCopies), cacheRate), "", ""},
		row{"pull throughput ÷ page-cache copy throughput", fmt.Sprintf("%.2f", pullRate/cacheRate), "", ""},
		row{"second pull of the installed environment (whole command)", minMax(cached), "≤ 200 ms", verdict(median(cached) <= 200*time.Millisecond)},
	)
	b.notes = append(b.notes, "Pull: `pyro env pull debian:12 --registry 127.0.0.1:PORT/pyro --no-build` into an empty cache, from go-containerregistry's registry served in the benchmark process (the real distribution protocol over loopback HTTP), timed as a whole command; it verifies every blob's digest while writing it. The pull writes each blob in one goroutine while another reads and verifies it, leaves all-zero 4 KiB blocks as holes (a root filesystem image has many), and flushes each blob to the disk (fsync) before naming it, so a crash never leaves a named blob without its bytes. The baseline copies the same three blob files on the same disk through a 1 MiB buffer (read, then write, as a download does; not copy_file_range, which may clone extents instead of copying bytes) and flushes them too, as the target compares against the disk; the same copy into the page cache alone is shown beside it. The second pull is the same command with the environment installed.")
	return nil
}

func cmd2(pyro, dir, host string) *exec.Cmd {
	cmd := exec.Command(pyro, "env", "pull", "debian:12", "--registry", host+"/pyro", "--no-build")
	cmd.Env = append(os.Environ(), "PYRO_ENV_CACHE="+dir)
	return cmd
}

func copyFile(src, dst string, durable bool) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	// Bytes read and written through memory, as a download writes them:
	// io.Copy between two files would use copy_file_range, which may
	// share or clone extents instead of copying bytes.
	if _, err := io.CopyBuffer(struct{ io.Writer }{out}, struct{ io.Reader }{in}, make([]byte, 1<<20)); err != nil {
		out.Close()
		return err
	}
	if durable {
		if err := out.Sync(); err != nil {
			out.Close()
			return err
		}
	}
	return out.Close()
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}
