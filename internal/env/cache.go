package env

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/pyro-sandbox/pyro/internal/errs"
	"github.com/pyro-sandbox/pyro/internal/fsutil"
)

// Cache is the local store of environments:
//
//	blobs/sha256/<hex>      immutable content, shared by environments
//	envs/<name>/manifest.json  an installed environment (written last)
//	envs/<name>/last-used   touched by each boot
//	locks/<name>.lock       held while the environment is pulled
//	boot/<key>.cpio         initramfs files combining modules and agent (mtime: last use)
//	boot/pyro-guest-<hex>   the guest build embedded in pyro (mtime: last use)
//	tmp/                    work in progress; never looks installed
type Cache struct {
	Dir string
}

// DefaultCacheDir is $PYRO_ENV_CACHE, else $XDG_CACHE_HOME/pyro/environments,
// else ~/.cache/pyro/environments.
func DefaultCacheDir() string {
	if d := os.Getenv("PYRO_ENV_CACHE"); d != "" {
		return d
	}
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = os.TempDir()
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "pyro", "environments")
}

func escapeName(name string) string { return url.PathEscape(name) }

func (c *Cache) envDir(name string) string { return filepath.Join(c.Dir, "envs", escapeName(name)) }

// BlobPath is where the blob with digest lives.
func (c *Cache) BlobPath(digest string) string {
	return filepath.Join(c.Dir, "blobs", "sha256", strings.TrimPrefix(digest, "sha256:"))
}

// TempDir makes a fresh directory for work in progress.
func (c *Cache) TempDir(prefix string) (string, error) {
	dir := filepath.Join(c.Dir, "tmp")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", errs.Wrap(errs.Unavailable, err, "check the permissions of "+c.Dir, "creating the environment cache")
	}
	return os.MkdirTemp(dir, prefix)
}

// PutFile moves the file at path into the blob store and returns its blob.
// The file is hashed as it is; a blob that exists already is kept.
func (c *Cache) PutFile(path string) (Blob, error) {
	f, err := os.Open(path)
	if err != nil {
		return Blob{}, err
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err == nil {
		// Durable before it is named (fsync works on a read-only
		// descriptor): a crash must not leave a named blob without its bytes.
		err = f.Sync()
	}
	f.Close()
	if err != nil {
		return Blob{}, err
	}
	b := Blob{Digest: "sha256:" + hex.EncodeToString(h.Sum(nil)), Size: n}
	dst := c.BlobPath(b.Digest)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return Blob{}, err
	}
	if fi, err := os.Stat(dst); err == nil && fi.Size() == n {
		os.Remove(path)
		return b, nil
	}
	// Blobs are shared read-only by every VM booting them.
	if err := os.Chmod(path, 0o444); err != nil {
		return Blob{}, err
	}
	if err := os.Rename(path, dst); err != nil {
		return Blob{}, err
	}
	return b, fsutil.SyncDir(filepath.Dir(dst))
}

// Installed returns the manifest of an installed environment, or an error
// of kind NotFound.
func (c *Cache) Installed(name string) (*Manifest, error) {
	data, err := os.ReadFile(filepath.Join(c.envDir(name), "manifest.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, errs.New(errs.NotFound, fmt.Sprintf("run 'pyro env pull %s'", name), "environment %s is not installed", name)
	}
	if err != nil {
		return nil, err
	}
	m, err := parseManifest(data)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, fmt.Sprintf("run 'pyro env pull %s' to reinstall it", name), "environment %s is damaged", name)
	}
	for _, b := range m.Blobs() {
		if fi, err := os.Stat(c.BlobPath(b.Digest)); err != nil || fi.Size() != b.Size {
			return nil, errs.New(errs.NotFound, fmt.Sprintf("run 'pyro env pull %s' to reinstall it", name), "environment %s is missing its blob %s", name, b.Digest)
		}
	}
	return m, nil
}

// Install records m as installed. Every blob must be in the store already;
// the manifest is written last and atomically, so an interrupted pull never
// looks installed.
func (c *Cache) Install(m *Manifest) error {
	if err := m.validate(); err != nil {
		return err
	}
	for _, b := range m.Blobs() {
		if _, err := os.Stat(c.BlobPath(b.Digest)); err != nil {
			return fmt.Errorf("installing %s: blob %s is not in the cache", m.Name, b.Digest)
		}
	}
	dir := c.envDir(m.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Join(dir, "manifest.json"), append(data, '\n'), 0o644)
}

// Remove uninstalls an environment; its blobs stay until Prune.
func (c *Cache) Remove(name string) error {
	dir := c.envDir(name)
	hidden := filepath.Join(filepath.Dir(dir), ".removing-"+filepath.Base(dir))
	if err := os.Rename(dir, hidden); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	return os.RemoveAll(hidden)
}

// List returns the installed environments' manifests, by name.
func (c *Cache) List() ([]*Manifest, error) {
	entries, err := os.ReadDir(filepath.Join(c.Dir, "envs"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*Manifest
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		name, err := url.PathUnescape(e.Name())
		if err != nil {
			continue
		}
		if m, err := c.Installed(name); err == nil {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Lock takes the lock that serialises pulls of name. waiting is called if
// another process holds it.
func (c *Cache) Lock(ctx context.Context, name string, waiting func()) (*fsutil.Lock, error) {
	dir := filepath.Join(c.Dir, "locks")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "check the permissions of "+c.Dir, "creating the environment cache")
	}
	return fsutil.AcquireLock(ctx, filepath.Join(dir, escapeName(name)+".lock"), waiting)
}

// Touch records that an environment was used now.
func (c *Cache) Touch(name string) {
	p := filepath.Join(c.envDir(name), "last-used")
	now := time.Now()
	if err := os.Chtimes(p, now, now); err != nil {
		os.WriteFile(p, nil, 0o644)
	}
}

// LastUsed says when an environment last booted; zero if never.
func (c *Cache) LastUsed(name string) time.Time {
	fi, err := os.Stat(filepath.Join(c.envDir(name), "last-used"))
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

// PruneResult says what Prune removed.
type PruneResult struct {
	RemovedEnvironments []string `json:"removed_environments"`
	RemovedBlobs        int      `json:"removed_blobs"`
	FreedBytes          int64    `json:"freed_bytes"`
}

// Prune removes installed environments for which keep returns false, then
// every blob, boot file and leftover of an interrupted pull that no
// remaining environment uses and keepBlobs does not name. It skips
// environments being pulled.
func (c *Cache) Prune(ctx context.Context, keep func(*Manifest) bool, keepBlobs map[string]bool) (PruneResult, error) {
	var res PruneResult
	installed, err := c.List()
	if err != nil {
		return res, err
	}
	if len(installed) > 0 {
		// Without the directory no lock could be taken, and every
		// environment would look as if it were being pulled.
		if err := os.MkdirAll(filepath.Join(c.Dir, "locks"), 0o755); err != nil {
			return res, err
		}
	}
	used := map[string]bool{}
	for d := range keepBlobs {
		used[d] = true
	}
	for _, m := range installed {
		lock, ok, err := fsutil.TryLock(filepath.Join(c.Dir, "locks", escapeName(m.Name)+".lock"))
		if err != nil || !ok {
			// Being pulled now: leave it and its blobs alone.
			for _, b := range m.Blobs() {
				used[b.Digest] = true
			}
			continue
		}
		if keep(m) {
			for _, b := range m.Blobs() {
				used[b.Digest] = true
			}
		} else if err := c.Remove(m.Name); err == nil {
			res.RemovedEnvironments = append(res.RemovedEnvironments, m.Name)
		}
		lock.Unlock()
	}
	blobDir := filepath.Join(c.Dir, "blobs", "sha256")
	entries, _ := os.ReadDir(blobDir)
	for _, e := range entries {
		if used["sha256:"+e.Name()] {
			continue
		}
		p := filepath.Join(blobDir, e.Name())
		if fi, err := os.Stat(p); err == nil && os.Remove(p) == nil {
			res.RemovedBlobs++
			res.FreedBytes += fi.Size()
		}
	}
	// Boot files are derived and cheap to rebuild.
	res.FreedBytes += removeAllCounting(filepath.Join(c.Dir, "boot"))
	// Work of pulls that are not running any more (their lock is free).
	if c.noPullRunning() {
		res.FreedBytes += removeAllCounting(filepath.Join(c.Dir, "tmp"))
	}
	return res, nil
}

func (c *Cache) noPullRunning() bool {
	entries, _ := os.ReadDir(filepath.Join(c.Dir, "locks"))
	for _, e := range entries {
		l, ok, err := fsutil.TryLock(filepath.Join(c.Dir, "locks", e.Name()))
		if err != nil || !ok {
			return false
		}
		l.Unlock()
	}
	return true
}

// removeAllCounting removes dir and returns the disk space its files took.
func removeAllCounting(dir string) int64 {
	n := fsutil.DiskUsage(dir)
	if fsutil.RemoveTree(dir) != nil {
		return 0
	}
	return n
}
