package env

import (
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-sandbox/pyro/internal/errs"
	"github.com/pyro-sandbox/pyro/internal/fsutil"
	"github.com/pyro-sandbox/pyro/internal/guestbin"
	"github.com/pyro-sandbox/pyro/internal/initramfs"
)

// BootFiles returns the kernel and the initramfs that boot m with the pyro
// binary at agent as the guest's init. The initramfs (the agent's root
// skeleton followed by m's modules archive) is built once per agent binary
// and modules blob, and kept under boot/.
func (c *Cache) BootFiles(m *Manifest, agent string) (kernelPath, initrdPath string, err error) {
	var st unix.Stat_t
	err = unix.Stat(agent, &st)
	if err != nil && c.IsGuestBuild(agent) {
		// A prune (or another pyro's clean-up) removed the guest build
		// since it was written: this pyro carries it, and writes it again.
		if b := guestbin.Binary(); b != nil {
			if p, werr := c.GuestBuild(b); werr == nil && p == agent {
				err = unix.Stat(agent, &st)
			}
		}
		if err != nil {
			return "", "", errs.Wrap(errs.Unavailable, err, "run the command again; if it fails again, reinstall pyro", "pyro's guest build %s was removed", agent)
		}
	}
	if err != nil {
		return "", "", errs.Wrap(errs.Unavailable, err, "reinstall pyro", "the pyro binary for the guest is missing")
	}
	// The binary is identified by what stat says of it, not by hashing its
	// megabytes on every boot; a guest build is named by its digest, and
	// its modification time only says when it was last used.
	h := sha256.New()
	if c.IsGuestBuild(agent) {
		fmt.Fprintf(h, "%s\n%s\n", m.Modules.Digest, filepath.Base(agent))
	} else {
		fmt.Fprintf(h, "%s\n%s\n%d:%d:%d:%d.%d\n", m.Modules.Digest, agent, st.Dev, st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec)
	}
	key := hex.EncodeToString(h.Sum(nil))[:32]
	initrdPath = filepath.Join(c.Dir, "boot", key+".cpio")
	kernelPath = c.BlobPath(m.Kernel.Digest)
	if _, err := os.Stat(initrdPath); err == nil {
		// The modification time says when it was last used, for
		// removeStaleBootFiles.
		now := time.Now()
		os.Chtimes(initrdPath, now, now)
		return kernelPath, initrdPath, nil
	}
	if err := CheckStatic(agent); err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(filepath.Dir(initrdPath), 0o755); err != nil {
		return "", "", err
	}
	tmp, err := os.CreateTemp(filepath.Dir(initrdPath), ".initrd-*")
	if err != nil {
		return "", "", err
	}
	defer os.Remove(tmp.Name())
	err = initramfs.WriteAgent(tmp, agent)
	if err == nil {
		err = appendFile(tmp, c.BlobPath(m.Modules.Digest))
	}
	if err == nil {
		err = tmp.Chmod(0o444)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", "", fmt.Errorf("building the initramfs: %w", err)
	}
	if err := os.Rename(tmp.Name(), initrdPath); err != nil {
		return "", "", err
	}
	removeStaleBootFiles(filepath.Dir(initrdPath), time.Now().Add(-staleBootFile), agent)
	return kernelPath, initrdPath, fsutil.SyncDir(filepath.Dir(initrdPath))
}

// staleBootFile is how long an initramfs may go unused before a new one
// replaces it: each pyro binary (every upgrade) gets its own.
const staleBootFile = 7 * 24 * time.Hour

// removeStaleBootFiles removes the initramfs files and guest builds of dir
// last used before cutoff, except keep. A VM already booted from one does
// not need it any more (QEMU reads it at start).
func removeStaleBootFiles(dir string, cutoff time.Time, keep string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		bootFile := filepath.Ext(name) == ".cpio" || strings.HasPrefix(name, guestBuildPrefix)
		if !bootFile || !e.Type().IsRegular() || filepath.Join(dir, name) == keep {
			continue
		}
		if fi, err := e.Info(); err == nil && fi.ModTime().Before(cutoff) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

func appendFile(w io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// CheckStatic refuses a dynamically linked pyro binary: it becomes the
// guest's init, and the guest has none of the host's shared libraries.
func CheckStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "reinstall pyro", "reading the pyro binary %s", path)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return errs.New(errs.Unavailable, "use an x86_64 build of pyro", "the pyro binary %s is not built for x86_64", path)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errs.New(errs.Unavailable, "build pyro with CGO_ENABLED=0 (make build does)", "the pyro binary %s is dynamically linked, so it cannot run as the guest's init", path)
		}
	}
	return nil
}

// guestBuildPrefix starts the name of a guest build in boot/; its digest
// follows.
const guestBuildPrefix = "pyro-guest-"

// GuestBuild returns the path of bin, the guest build embedded in this
// pyro, under boot/, writing it there first if it is missing. The file is
// named by bin's digest and never rewritten; each call marks it used.
func (c *Cache) GuestBuild(bin []byte) (string, error) {
	sum := sha256.Sum256(bin)
	path := filepath.Join(c.Dir, "boot", guestBuildPrefix+hex.EncodeToString(sum[:16]))
	if fi, err := os.Stat(path); err == nil && fi.Size() == int64(len(bin)) {
		now := time.Now()
		os.Chtimes(path, now, now)
		return path, nil
	}
	err := os.MkdirAll(filepath.Dir(path), 0o755)
	if err == nil {
		err = fsutil.WriteFileAtomic(path, bin, 0o555)
	}
	if err != nil {
		return "", errs.Wrap(errs.Unavailable, err, "check that "+c.Dir+" is writable and has free space, or set PYRO_ENV_CACHE", "writing pyro's guest build")
	}
	return path, nil
}

// HostAgent is the program that runs agent on the host (host-compat mode):
// pyro, the binary that wrote the guest build, when agent is one (the
// cache may sit on a noexec mount, and nothing is emulated there for the
// guest build to speed up); agent itself otherwise. pyro is "" when the
// caller is not pyro.
func (c *Cache) HostAgent(agent, pyro string) string {
	if pyro != "" && c.IsGuestBuild(agent) {
		return pyro
	}
	return agent
}

// IsGuestBuild says whether path is a guest build GuestBuild wrote.
func (c *Cache) IsGuestBuild(path string) bool {
	return filepath.Dir(path) == filepath.Join(c.Dir, "boot") && strings.HasPrefix(filepath.Base(path), guestBuildPrefix)
}
