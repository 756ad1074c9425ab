// Package supervisor is the process that owns one running workspace: its
// VMM, the single connection to the guest agent, and its TTL. It is pyro
// itself, started detached; it binds its socket, boots the VM, records
// where it can be found in a bootstrap file, and serves any number of
// clients (CLI calls, the MCP server, SDK programs) at once. It dies with
// its VM, and its VM dies with it. A later client that finds it dead cleans
// up after it (see Decide).
package supervisor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pyro-sandbox/pyro/internal/fsutil"
	"github.com/pyro-sandbox/pyro/internal/host"
)

// Bootstrap is what a running supervisor records about itself, so a later
// client can find it, and tell it from an unrelated process that reused
// its pid.
type Bootstrap struct {
	PID       int       `json:"pid"`
	StartTime uint64    `json:"start_time"` // /proc/<pid>/stat field 22
	BootID    string    `json:"boot_id"`
	Socket    string    `json:"socket"`
	VMMPID    int       `json:"vmm_pid"`
	VMMStart  uint64    `json:"vmm_start_time"`
	StartedAt time.Time `json:"started_at"`
}

// BootstrapFile is the name of the bootstrap file in a workspace's
// directory.
const BootstrapFile = "supervisor.json"

// WriteBootstrap records b atomically.
func WriteBootstrap(path string, b Bootstrap) error {
	data, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(path, append(data, '\n'), 0o600)
}

// ReadBootstrap reads a bootstrap file; ok is false when there is none.
func ReadBootstrap(path string) (b Bootstrap, ok bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return b, false, nil
	}
	if err != nil {
		return b, false, err
	}
	if err := json.Unmarshal(data, &b); err != nil {
		// A damaged bootstrap is treated as none; the supervisor's
		// process identity cannot be checked without it.
		return b, false, nil
	}
	return b, true, nil
}

// processStartTime returns field 22 of /proc/<pid>/stat (start time in
// clock ticks since boot), which tells a process from a later one with the
// same pid.
func processStartTime(pid int) (uint64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces and parentheses; fields
	// after the last ')' are plain.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	fields := strings.Fields(string(data[i+1:]))
	// fields[0] is field 3 (state); start time is field 22.
	if len(fields) < 20 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	if fields[0] == "Z" {
		return 0, fmt.Errorf("process %d is a zombie", pid)
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// sameProcess says whether pid is still the process that started at start
// (in this boot of the host).
func sameProcess(pid int, start uint64, bootID string) bool {
	if pid <= 0 || bootID != host.BootID() {
		return false
	}
	st, err := processStartTime(pid)
	return err == nil && st == start
}

// ProcessIdentity returns what identifies the process pid now.
func ProcessIdentity(pid int) (uint64, error) { return processStartTime(pid) }

// killIfSame kills pid with SIGKILL if it is still the process that started
// at start; it reports whether it did.
func killIfSame(pid int, start uint64, bootID string) bool {
	if !sameProcess(pid, start, bootID) {
		return false
	}
	// A pidfd pins the process: the identity checked above cannot be
	// reused between the check and the kill.
	fd, err := pidfdOpen(pid)
	if err != nil {
		return false
	}
	defer syscall.Close(fd)
	if !sameProcess(pid, start, bootID) {
		return false
	}
	return pidfdKill(fd) == nil
}
