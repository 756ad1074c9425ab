// Package store keeps pyro's state on disk: one directory per workspace,
// whose record is written atomically and changed under a per-workspace lock.
//
// Layout under the state directory ($PYRO_HOME):
//
//	workspaces/<id>/workspace.json   the record (atomic writes)
//	workspaces/<id>/lock             flock serialising changes of state
//	workspaces/<id>/disk.ext4        the writable layer of the VM (sparse)
//	workspaces/<id>/baseline.tar     /workspace as created (immutable)
//	workspaces/<id>/journal.jsonl    the command history
//	workspaces/<id>/supervisor.json  where the running supervisor is found
//	workspaces/<id>/supervisor.log   the supervisor's own log
//	workspaces/.deleting-<id>/       a workspace being removed
//	run/<hash>.sock                  supervisor sockets (short paths)
package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-sandbox/pyro/internal/errs"
	"github.com/pyro-sandbox/pyro/internal/fsutil"
)

// Store is the state directory.
type Store struct {
	Dir string
}

// NameRE is the form of workspace names, label keys, snapshot and service
// names.
var NameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

var idRE = regexp.MustCompile(`^ws-[0-9a-f]{16}$`)

// NewID returns a fresh workspace id.
func NewID() string {
	var b [8]byte
	rand.Read(b[:])
	return "ws-" + hex.EncodeToString(b[:])
}

// IsID says whether s has the form of a workspace id.
func IsID(s string) bool { return idRE.MatchString(s) }

// Dir of a workspace.
func (s *Store) WorkspaceDir(id string) string { return filepath.Join(s.Dir, "workspaces", id) }

// Path of a file of a workspace.
func (s *Store) Path(id, name string) string { return filepath.Join(s.WorkspaceDir(id), name) }

// maxSocketPath is the longest path a unix socket can be bound at
// (sun_path holds 108 bytes with the terminating NUL).
const maxSocketPath = 107

// SocketPath is a short path for a workspace's supervisor socket: under
// $XDG_RUNTIME_DIR, else under the state directory, else (both too long)
// in a private directory of /tmp. PrepareSocketDir makes its directory.
func (s *Store) SocketPath(id string) string {
	sum := sha256.Sum256([]byte(s.Dir + "\x00" + id))
	name := hex.EncodeToString(sum[:8]) + ".sock"
	var dirs []string
	if rt := os.Getenv("XDG_RUNTIME_DIR"); rt != "" && filepath.IsAbs(rt) {
		dirs = append(dirs, filepath.Join(rt, "pyro"))
	}
	dirs = append(dirs, filepath.Join(s.Dir, "run"))
	for _, d := range dirs {
		if p := filepath.Join(d, name); len(p) <= maxSocketPath {
			return p
		}
	}
	// Not os.TempDir: $TMPDIR can be as long as the paths above.
	return filepath.Join(privateTmpDir(), name)
}

// tmpBase is /tmp; tests change it.
var tmpBase = "/tmp"

func privateTmpDir() string { return filepath.Join(tmpBase, fmt.Sprintf("pyro-%d", os.Geteuid())) }

// PrepareSocketDir makes the directory of a socket path that SocketPath
// returned. A directory in /tmp must be this user's alone: another user
// could have made it first to catch the socket.
func PrepareSocketDir(sock string) error {
	dir := filepath.Dir(sock)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return errs.Wrap(errs.Unavailable, err, "", "creating the socket directory %s", dir)
	}
	if dir != privateTmpDir() {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || int(st.Uid) != os.Geteuid() || st.Mode&0o077 != 0 {
		return errs.New(errs.Unavailable, fmt.Sprintf("remove %s, or set a shorter PYRO_HOME or XDG_RUNTIME_DIR", dir),
			"%s is not a private directory of this user (owner %d, mode %o)", dir, st.Uid, st.Mode&0o7777)
	}
	return nil
}

// Create makes the directory of a new workspace and writes its first
// record. It fails with Conflict when the id exists.
func (s *Store) Create(rec any, id string) error {
	dir := s.WorkspaceDir(id)
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return errs.Wrap(errs.Unavailable, err, "check the permissions of "+s.Dir, "creating the state directory")
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return errs.New(errs.Conflict, "", "workspace %s exists", id)
		}
		return err
	}
	return s.Write(id, rec)
}

// Write replaces a workspace's record atomically.
func (s *Store) Write(id string, rec any) error {
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(s.Path(id, "workspace.json"), append(data, '\n'), 0o600)
}

// Read decodes a workspace's record into rec. A missing workspace is
// NotFound.
func (s *Store) Read(id string, rec any) error {
	data, err := os.ReadFile(s.Path(id, "workspace.json"))
	if errors.Is(err, os.ErrNotExist) {
		return errs.New(errs.NotFound, "see 'pyro workspace list'", "no workspace %s", id)
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, rec); err != nil {
		return errs.Wrap(errs.Internal, err, "delete it with 'pyro workspace delete "+id+"'", "workspace %s has a damaged record", id)
	}
	return nil
}

// IDs lists the workspaces' ids, sorted.
func (s *Store) IDs() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(s.Dir, "workspaces"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() && IsID(e.Name()) {
			if _, err := os.Stat(s.Path(e.Name(), "workspace.json")); err == nil {
				ids = append(ids, e.Name())
			}
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// Lock takes a workspace's lock, waiting until ctx ends.
func (s *Store) Lock(ctx context.Context, id string) (*fsutil.Lock, error) {
	l, err := fsutil.AcquireLock(ctx, s.Path(id, "lock"), nil)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, errs.New(errs.NotFound, "see 'pyro workspace list'", "no workspace %s", id)
		}
		return nil, err
	}
	return l, nil
}

// Remove deletes a workspace's directory: renamed to a hidden name first,
// so a half-removed workspace never lists, then removed.
func (s *Store) Remove(id string) error {
	dir := s.WorkspaceDir(id)
	hidden := filepath.Join(filepath.Dir(dir), ".deleting-"+id+"-"+fmt.Sprint(time.Now().UnixNano()))
	if err := os.Rename(dir, hidden); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	return fsutil.RemoveTree(hidden)
}

// CleanLeftovers removes directories of deletes that were interrupted.
func (s *Store) CleanLeftovers() {
	entries, _ := os.ReadDir(filepath.Join(s.Dir, "workspaces"))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".deleting-") {
			fsutil.RemoveTree(filepath.Join(s.Dir, "workspaces", e.Name()))
		}
	}
}
