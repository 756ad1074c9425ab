package store

import (
	"time"

	"github.com/pyro-sandbox/pyro/internal/env"
)

// Workspace states.
const (
	StateCreated = "created"
	StateStarted = "started"
	StateStopped = "stopped"
	StateFailed  = "failed"
)

// Seed says what /workspace was created from.
type Seed struct {
	Mode     string `json:"mode"` // empty, directory, tar_archive
	SeedPath string `json:"seed_path,omitempty"`
}

// Secret is what the host keeps of a secret: never its value.
type Secret struct {
	Name       string `json:"name"`
	SourceKind string `json:"source_kind"` // literal, file
}

// CommandSummary is the last command run in a workspace.
type CommandSummary struct {
	Command    string    `json:"command"`
	ExitCode   int       `json:"exit_code"`
	DurationMs int64     `json:"duration_ms"`
	TimedOut   bool      `json:"timed_out"`
	FinishedAt time.Time `json:"finished_at"`
}

// ModeHostCompat is the execution mode of a workspace whose agent runs on
// the host in namespaces, not in a VM (pyro.ModeHostCompat).
const ModeHostCompat = "host_compat"

// Record is a workspace as stored. Its JSON field names are the
// contract's where they overlap with the workspace payload.
type Record struct {
	ID            string            `json:"workspace_id"`
	Name          string            `json:"name"`
	Labels        map[string]string `json:"labels"`
	Environment   string            `json:"environment"`
	State         string            `json:"state"`
	ExecutionMode string            `json:"execution_mode"`
	VCPUCount     int               `json:"vcpu_count"`
	MemMiB        int               `json:"mem_mib"`
	NetworkPolicy string            `json:"network_policy"`
	Seed          Seed              `json:"workspace_seed"`
	Secrets       []Secret          `json:"secrets"`
	CreatedAt     time.Time         `json:"created_at"`
	LastActivity  time.Time         `json:"last_activity_at"`
	TTLSeconds    int               `json:"ttl_seconds"`
	CommandCount  int               `json:"command_count"`
	LastCommand   *CommandSummary   `json:"last_command"`
	LastError     string            `json:"last_error"`

	// Manifest pins the environment the workspace boots (its blobs are
	// kept by env prune while the workspace exists).
	Manifest    env.Manifest `json:"manifest"`
	Accelerator string       `json:"accelerator,omitempty"`
	DiskBytes   int64        `json:"disk_bytes"`
	// Generation counts resets; each boots a fresh VM.
	Generation int `json:"generation"`
}

// ExpiresAt is when the TTL ends: the TTL runs from the last activity.
func (r *Record) ExpiresAt() time.Time {
	return r.LastActivity.Add(time.Duration(r.TTLSeconds) * time.Second)
}

// Expired says whether the TTL has passed at now.
func (r *Record) Expired(now time.Time) bool {
	return r.TTLSeconds > 0 && now.After(r.ExpiresAt())
}
