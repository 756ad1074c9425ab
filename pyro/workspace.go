package pyro

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"

	"github.com/pyro-sandbox/pyro/internal/agentproto"
	"github.com/pyro-sandbox/pyro/internal/env"
	"github.com/pyro-sandbox/pyro/internal/errs"
	"github.com/pyro-sandbox/pyro/internal/fsutil"
	"github.com/pyro-sandbox/pyro/internal/seed"
	"github.com/pyro-sandbox/pyro/internal/store"
	"github.com/pyro-sandbox/pyro/internal/supervisor"
	"github.com/pyro-sandbox/pyro/internal/vmm/hostcompat"
)

// Workspace defaults and bounds.
const (
	DefaultWorkspaceTTLSeconds = 3600
	DefaultWorkspaceDiskMiB    = 8192
	MaxLabels                  = 64
)

// WorkspaceSeed says what /workspace was created from.
type WorkspaceSeed = store.Seed

// SecretRef is what pyro keeps of a secret: its name and where it came
// from, never its value.
type SecretRef = store.Secret

// LastCommand summarises the last command run in a workspace.
type LastCommand = store.CommandSummary

// Workspace is the workspace payload.
type Workspace struct {
	WorkspaceID         string            `json:"workspace_id"`
	Name                string            `json:"name"`
	Labels              map[string]string `json:"labels"`
	Environment         string            `json:"environment"`
	State               string            `json:"state"`
	ExecutionMode       string            `json:"execution_mode"`
	Accelerator         string            `json:"accelerator,omitempty"`
	VCPUCount           int               `json:"vcpu_count"`
	MemMiB              int               `json:"mem_mib"`
	NetworkPolicy       string            `json:"network_policy"`
	WorkspaceSeed       WorkspaceSeed     `json:"workspace_seed"`
	Secrets             []SecretRef       `json:"secrets"`
	CreatedAt           time.Time         `json:"created_at"`
	LastActivityAt      time.Time         `json:"last_activity_at"`
	ExpiresAt           time.Time         `json:"expires_at"`
	TTLSeconds          int               `json:"ttl_seconds"`
	CommandCount        int               `json:"command_count"`
	LastCommand         *LastCommand      `json:"last_command"`
	ServiceCount        int               `json:"service_count"`
	RunningServiceCount int               `json:"running_service_count"`
	LastError           string            `json:"last_error"`
}

func workspacePayload(r *store.Record) *Workspace {
	labels := r.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	secrets := r.Secrets
	if secrets == nil {
		secrets = []SecretRef{}
	}
	return &Workspace{
		WorkspaceID: r.ID, Name: r.Name, Labels: labels, Environment: r.Environment, State: r.State,
		ExecutionMode: r.ExecutionMode, Accelerator: r.Accelerator, VCPUCount: r.VCPUCount, MemMiB: r.MemMiB,
		NetworkPolicy: r.NetworkPolicy, WorkspaceSeed: r.Seed, Secrets: secrets, CreatedAt: r.CreatedAt,
		LastActivityAt: r.LastActivity, ExpiresAt: r.ExpiresAt(), TTLSeconds: r.TTLSeconds,
		CommandCount: r.CommandCount, LastCommand: r.LastCommand, LastError: r.LastError,
	}
}

// WorkspaceCreateRequest creates a workspace. Zero sizes take defaults.
type WorkspaceCreateRequest struct {
	Environment string `json:"environment"`
	// SeedPath is a directory, .tar, .tar.gz or .tgz on the host whose
	// content becomes /workspace.
	SeedPath        string            `json:"seed_path,omitempty"`
	Name            string            `json:"name,omitempty"`
	Labels          map[string]string `json:"labels,omitempty"`
	VCPUCount       int               `json:"vcpu_count,omitempty"`
	MemMiB          int               `json:"mem_mib,omitempty"`
	TTLSeconds      int               `json:"ttl_seconds,omitempty"`
	NetworkPolicy   string            `json:"network_policy,omitempty"`
	AllowHostCompat bool              `json:"allow_host_compat,omitempty"`
}

func (c *Client) store() *store.Store { return &store.Store{Dir: c.opts.StateDir} }

func validateName(kind, name string) error {
	if !store.NameRE.MatchString(name) {
		return errs.New(errs.Invalid, "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
			"invalid %s %q", kind, truncate(name, 80))
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func validateLabels(labels map[string]string) error {
	if len(labels) > MaxLabels {
		return errs.New(errs.Invalid, "", "more than %d labels", MaxLabels)
	}
	for k, v := range labels {
		if err := validateName("label key", k); err != nil {
			return err
		}
		if len(v) > 256 || strings.ContainsAny(v, "\x00\n") {
			return errs.New(errs.Invalid, "use a value of at most 256 bytes on one line", "invalid value for label %q", k)
		}
	}
	return nil
}

// namesLock serialises the check that a name is unused with its use.
func (c *Client) namesLock(ctx context.Context) (*fsutil.Lock, error) {
	if err := os.MkdirAll(c.opts.StateDir, 0o700); err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "check the permissions of "+c.opts.StateDir, "creating the state directory")
	}
	return fsutil.AcquireLock(ctx, c.opts.StateDir+"/names.lock", nil)
}

func (c *Client) nameTaken(name, exceptID string) bool {
	ids, _ := c.store().IDs()
	for _, id := range ids {
		var r store.Record
		if id != exceptID && c.store().Read(id, &r) == nil && r.Name == name {
			return true
		}
	}
	return false
}

// CreateWorkspace creates a workspace: a VM with /workspace seeded from
// SeedPath, and a baseline of it for diff and reset. On any failure
// nothing of it is left.
func (c *Client) CreateWorkspace(ctx context.Context, req WorkspaceCreateRequest) (ws *Workspace, err error) {
	if req.Environment == "" {
		req.Environment = env.DefaultName
	}
	if req.VCPUCount == 0 {
		req.VCPUCount = DefaultVCPUCount
	}
	if req.MemMiB == 0 {
		req.MemMiB = DefaultMemMiB
	}
	if req.TTLSeconds == 0 {
		req.TTLSeconds = DefaultWorkspaceTTLSeconds
	}
	if err := validateSize(req.VCPUCount, req.MemMiB, 1, req.TTLSeconds); err != nil {
		return nil, err
	}
	switch req.NetworkPolicy {
	case "", "off":
	case "egress", "egress+published-ports":
		return nil, errs.New(errs.Unavailable, "create the workspace with --network-policy off; guest networking comes in a later release", "network policy %q is not supported yet", req.NetworkPolicy)
	default:
		return nil, errs.New(errs.Invalid, "use off, egress or egress+published-ports", "unknown network policy %q", req.NetworkPolicy)
	}
	if req.Name != "" {
		if err := validateName("workspace name", req.Name); err != nil {
			return nil, err
		}
		if store.IsID(req.Name) {
			return nil, errs.New(errs.Invalid, "choose a name that does not look like a workspace id", "invalid workspace name %q", req.Name)
		}
	}
	if err := validateLabels(req.Labels); err != nil {
		return nil, err
	}
	m, err := c.installed(ctx, req.Environment)
	if err != nil {
		return nil, err
	}
	var src *seed.Source
	if req.SeedPath != "" {
		if src, err = seed.Open(ctx, req.SeedPath, seed.DefaultLimits); err != nil {
			return nil, err
		}
	}
	// Without QEMU, and only when the caller allowed it, the workspace's
	// agent runs on the host in namespaces (see package vmm/hostcompat).
	mode, accelerator := ModeGuestSerial, ""
	if err := c.checkRuntime(); err != nil {
		if !req.AllowHostCompat {
			return nil, err
		}
		if err := hostcompat.CheckWorkspace(); err != nil {
			return nil, err
		}
		mode = ModeHostCompat
	} else {
		d, err := c.accelerator(ctx, m)
		if err != nil {
			return nil, err
		}
		accelerator = string(d.Accel)
	}
	agent, err := c.agentBinary()
	if err != nil {
		return nil, err
	}

	// A LIFO of undo steps: a failure unwinds exactly what was built.
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	st := c.store()
	names, err := c.namesLock(ctx)
	if err != nil {
		return nil, err
	}
	if req.Name != "" && c.nameTaken(req.Name, "") {
		names.Unlock()
		return nil, errs.New(errs.Conflict, "choose another name, or delete the other workspace", "a workspace named %q exists", req.Name)
	}
	id := store.NewID()
	now := time.Now().UTC()
	rec := &store.Record{
		ID: id, Name: req.Name, Labels: req.Labels, Environment: m.Name, State: store.StateCreated,
		ExecutionMode: mode, VCPUCount: req.VCPUCount, MemMiB: req.MemMiB, NetworkPolicy: "off",
		Seed: store.Seed{Mode: seed.ModeEmpty}, Secrets: []store.Secret{}, CreatedAt: now, LastActivity: now,
		TTLSeconds: req.TTLSeconds, Manifest: *m, Accelerator: accelerator, DiskBytes: DefaultWorkspaceDiskMiB << 20,
	}
	if src != nil {
		rec.Seed = store.Seed{Mode: src.Mode, SeedPath: req.SeedPath}
	}
	err = st.Create(rec, id)
	names.Unlock()
	if err != nil {
		return nil, err
	}
	undo = append(undo, func() { st.Remove(id) })
	lock, err := st.Lock(ctx, id)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()

	rep := c.opts.Progress
	rep.Phase("create", "workspace_id", id, "environment", req.Environment)
	if err := makeDisk(ctx, st.Path(id, supervisor.DiskFile), rec.DiskBytes); err != nil {
		return nil, err
	}
	if mode == ModeHostCompat {
		rep.Phase("start", "workspace_id", id, "backend", "hostcompat")
	} else {
		rep.Phase("start", "workspace_id", id, "accelerator", accelerator)
	}
	undo = append(undo, func() { supervisor.KillRunning(st, id) })
	if err := c.spawn(ctx, rec, agent); err != nil {
		return nil, err
	}
	sess, err := c.dial(ctx, id)
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	rep.Phase("seed", "workspace_id", id, "mode", rec.Seed.Mode)
	if err := c.seedWorkspace(ctx, sess, id, src); err != nil {
		return nil, err
	}
	rec.State = store.StateStarted
	rec.LastActivity = time.Now().UTC()
	if err := st.Write(id, rec); err != nil {
		return nil, err
	}
	rep.Phase("ready", "workspace_id", id)
	return workspacePayload(rec), nil
}

// makeDisk creates the sparse ext4 file system of a workspace's writable
// layer. It costs almost nothing on disk until the guest writes.
func makeDisk(ctx context.Context, path string, size int64) error {
	tmp := path + ".tmp"
	os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	f.Close()
	if err == nil {
		var out []byte
		out, err = exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-m", "0", "-L", "pyro-layer",
			"-E", "lazy_itable_init=1,lazy_journal_init=1,discard", tmp).CombinedOutput()
		if err != nil {
			err = fmt.Errorf("mkfs.ext4: %v: %s", err, strings.TrimSpace(string(out)))
		}
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return errs.Wrap(errs.Unavailable, err, "install e2fsprogs and check the free space of "+path, "creating the workspace disk")
	}
	return nil
}

// spawn starts the workspace's supervisor and waits for its VM.
func (c *Client) spawn(ctx context.Context, rec *store.Record, agent string) error {
	pyroBin := agent
	if p := selfPath(); p != "" {
		pyroBin = p
	}
	_, err := supervisor.Spawn(ctx, supervisor.SpawnOptions{
		Pyro: pyroBin, Agent: agent, Store: c.store(), CacheDir: c.cache.Dir, ID: rec.ID,
		Accel: vmmAccel(rec.Accelerator), BootTimeout: bootTimeout(vmmAccel(rec.Accelerator)),
	})
	return err
}

// seedWorkspace sends the seed into /workspace, keeps it on the host as
// the baseline archive (what reset restores), and records the baseline in
// the guest (what diff compares with).
func (c *Client) seedWorkspace(ctx context.Context, sess *agentproto.Session, id string, src *seed.Source) error {
	st := c.store()
	baseline, err := os.OpenFile(st.Path(id, "baseline.tar.tmp"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(st.Path(id, "baseline.tar.tmp"))
	err = c.pushTar(ctx, sess, "/workspace", true, func(w *teeWriter) error {
		if src == nil {
			return writeEmptyTar(w)
		}
		_, err := src.WriteTar(ctx, w, seed.DefaultLimits)
		return err
	}, baseline)
	if cerr := baseline.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(st.Path(id, "baseline.tar.tmp"), st.Path(id, "baseline.tar")); err != nil {
		return err
	}
	return nil
}

// resolve finds a workspace by id or name.
func (c *Client) resolve(ref string) (string, error) {
	if ref == "" {
		return "", errs.New(errs.Invalid, "name a workspace by id or name", "no workspace given")
	}
	st := c.store()
	if store.IsID(ref) {
		if _, err := os.Stat(st.Path(ref, "workspace.json")); err == nil {
			return ref, nil
		}
		return "", errs.New(errs.NotFound, "see 'pyro workspace list'", "no workspace %s", ref)
	}
	if !store.NameRE.MatchString(ref) {
		return "", errs.New(errs.Invalid, "see 'pyro workspace list'", "%q is neither a workspace id nor a valid name", truncate(ref, 80))
	}
	ids, err := st.IDs()
	if err != nil {
		return "", err
	}
	for _, id := range ids {
		var r store.Record
		if st.Read(id, &r) == nil && r.Name == ref {
			return id, nil
		}
	}
	return "", errs.New(errs.NotFound, "see 'pyro workspace list'", "no workspace named %q", ref)
}

// reconcile makes a workspace's record true: a dead supervisor is cleaned
// up after and the workspace recorded as stopped; an expired one is
// deleted. It returns the record and, when the supervisor answers, a
// session to it (the caller closes it).
func (c *Client) reconcile(ctx context.Context, id string) (*store.Record, *agentproto.Session, error) {
	st := c.store()
	var rec store.Record
	if err := st.Read(id, &rec); err != nil {
		return nil, nil, err
	}
	for attempt := 0; ; attempt++ {
		o, sess := supervisor.Observe(ctx, st, &rec)
		switch supervisor.Decide(o) {
		case supervisor.Use:
			return &rec, sess, nil
		case supervisor.Stopped:
			return &rec, nil, nil
		case supervisor.Wait:
			if attempt < 3 {
				select {
				case <-ctx.Done():
					return nil, nil, ctx.Err()
				case <-time.After(200 * time.Millisecond):
				}
				continue
			}
			fallthrough // alive but not answering: hung
		case supervisor.CleanUp:
			if sess != nil {
				sess.Close()
			}
			if err := c.cleanUp(ctx, id, &rec); err != nil {
				return nil, nil, err
			}
			return &rec, nil, nil
		case supervisor.Delete:
			if sess != nil {
				sess.Close()
			}
			c.deleteWorkspace(ctx, id, true)
			return nil, nil, errs.New(errs.NotFound, "create a new workspace", "workspace %s expired (its TTL passed) and was deleted", id)
		}
	}
}

// cleanUp records the truth after a supervisor died: its VMM is killed if
// left, its socket removed, and the workspace marked stopped.
func (c *Client) cleanUp(ctx context.Context, id string, rec *store.Record) error {
	st := c.store()
	lock, err := st.Lock(ctx, id)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	supervisor.KillRunning(st, id)
	if err := st.Read(id, rec); err != nil {
		return err
	}
	if rec.State == store.StateStarted {
		rec.State = store.StateStopped
		rec.LastError = "the workspace's supervisor process died; its VM was stopped (start it again with 'pyro workspace start')"
		return st.Write(id, rec)
	}
	return nil
}

// dial connects to a running workspace's supervisor.
func (c *Client) dial(ctx context.Context, id string) (*agentproto.Session, error) {
	b, ok, err := supervisor.ReadBootstrap(c.store().Path(id, supervisor.BootstrapFile))
	if err != nil || !ok {
		return nil, errs.New(errs.Conflict, "start it with 'pyro workspace start "+id+"'", "workspace %s is not running", id)
	}
	sess, err := supervisor.Dial(ctx, b.Socket)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "see 'pyro workspace status "+id+"'", "connecting to workspace %s", id)
	}
	return sess, nil
}

// running returns a session to a workspace that must be running.
func (c *Client) running(ctx context.Context, ref string) (*store.Record, *agentproto.Session, error) {
	id, err := c.resolve(ref)
	if err != nil {
		return nil, nil, err
	}
	rec, sess, err := c.reconcile(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if sess == nil {
		hint := "start it with 'pyro workspace start " + id + "'"
		return nil, nil, errs.New(errs.Conflict, hint, "workspace %s is %s, not running%s", id, rec.State, lastErrorSuffix(rec))
	}
	return rec, sess, nil
}

func lastErrorSuffix(r *store.Record) string {
	if r.LastError == "" {
		return ""
	}
	return " (" + r.LastError + ")"
}

// WorkspaceList is the list of workspaces.
type WorkspaceList struct {
	Workspaces []*Workspace `json:"workspaces"`
	Count      int          `json:"count"`
}

// ListWorkspaces lists workspaces, newest activity first, after making
// each record true (dead supervisors cleaned up, expired ones deleted).
func (c *Client) ListWorkspaces(ctx context.Context) (*WorkspaceList, error) {
	c.store().CleanLeftovers()
	ids, err := c.store().IDs()
	if err != nil {
		return nil, err
	}
	out := &WorkspaceList{Workspaces: []*Workspace{}}
	for _, id := range ids {
		rec, sess, err := c.reconcile(ctx, id)
		if err != nil {
			if errs.KindOf(err) == errs.NotFound {
				continue
			}
			return nil, err
		}
		if sess != nil {
			sess.Close()
		}
		out.Workspaces = append(out.Workspaces, workspacePayload(rec))
	}
	sort.SliceStable(out.Workspaces, func(i, j int) bool {
		return out.Workspaces[i].LastActivityAt.After(out.Workspaces[j].LastActivityAt)
	})
	out.Count = len(out.Workspaces)
	return out, nil
}

// WorkspaceStatus returns a workspace, made true first.
func (c *Client) WorkspaceStatus(ctx context.Context, ref string) (*Workspace, error) {
	id, err := c.resolve(ref)
	if err != nil {
		return nil, err
	}
	rec, sess, err := c.reconcile(ctx, id)
	if err != nil {
		return nil, err
	}
	ws := workspacePayload(rec)
	if sess != nil {
		var s supervisor.Status
		if supervisor.Call(ctx, sess, supervisor.OpStatus, struct{}{}, &s) == nil && s.LastActivity.After(ws.LastActivityAt) {
			ws.LastActivityAt = s.LastActivity.UTC()
			ws.ExpiresAt = ws.LastActivityAt.Add(time.Duration(rec.TTLSeconds) * time.Second)
		}
		sess.Close()
	}
	return ws, nil
}

// WorkspaceUpdateRequest renames or relabels a workspace.
type WorkspaceUpdateRequest struct {
	Workspace   string            `json:"workspace_id"`
	Name        *string           `json:"name,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	ClearLabels []string          `json:"clear_labels,omitempty"`
}

// UpdateWorkspace changes a workspace's name and labels.
func (c *Client) UpdateWorkspace(ctx context.Context, req WorkspaceUpdateRequest) (*Workspace, error) {
	id, err := c.resolve(req.Workspace)
	if err != nil {
		return nil, err
	}
	if req.Name != nil && *req.Name != "" {
		if err := validateName("workspace name", *req.Name); err != nil {
			return nil, err
		}
	}
	if err := validateLabels(req.Labels); err != nil {
		return nil, err
	}
	for _, k := range req.ClearLabels {
		if err := validateName("label key", k); err != nil {
			return nil, err
		}
	}
	names, err := c.namesLock(ctx)
	if err != nil {
		return nil, err
	}
	defer names.Unlock()
	if req.Name != nil && *req.Name != "" && c.nameTaken(*req.Name, id) {
		return nil, errs.New(errs.Conflict, "choose another name", "a workspace named %q exists", *req.Name)
	}
	st := c.store()
	rec, lock, err := c.lockedRecord(ctx, id)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	if req.Name != nil {
		rec.Name = *req.Name
	}
	if rec.Labels == nil {
		rec.Labels = map[string]string{}
	}
	for _, k := range req.ClearLabels {
		delete(rec.Labels, k)
	}
	for k, v := range req.Labels {
		rec.Labels[k] = v
	}
	if len(rec.Labels) > MaxLabels {
		return nil, errs.New(errs.Invalid, "clear some labels first", "more than %d labels", MaxLabels)
	}
	if err := st.Write(id, rec); err != nil {
		return nil, err
	}
	return workspacePayload(rec), nil
}

// DeleteRequest deletes a workspace.
type DeleteRequest struct {
	Workspace string `json:"workspace_id"`
	// Force deletes even while commands run in it.
	Force bool `json:"force,omitempty"`
}

// DeleteResult says a workspace is gone.
type DeleteResult struct {
	WorkspaceID string `json:"workspace_id"`
	Deleted     bool   `json:"deleted"`
}

// DeleteWorkspace stops a workspace's VM and removes everything of it.
// While a command runs in it, it refuses unless Force is set.
func (c *Client) DeleteWorkspace(ctx context.Context, req DeleteRequest) (*DeleteResult, error) {
	id, err := c.resolve(req.Workspace)
	if err != nil {
		return nil, err
	}
	if err := c.deleteWorkspace(ctx, id, req.Force); err != nil {
		return nil, err
	}
	return &DeleteResult{WorkspaceID: id, Deleted: true}, nil
}

func (c *Client) deleteWorkspace(ctx context.Context, id string, force bool) error {
	st := c.store()
	if err := c.stopSupervisor(ctx, id, force, true); err != nil {
		return err
	}
	lock, err := st.Lock(ctx, id)
	if err != nil {
		if errs.KindOf(err) == errs.NotFound {
			return nil
		}
		return err
	}
	defer lock.Unlock()
	supervisor.KillRunning(st, id)
	return st.Remove(id)
}

// stopSupervisor asks a running supervisor to stop its VM (cleanly: the
// guest flushes its disk) and waits until it is gone; a supervisor that
// does not answer is killed.
func (c *Client) stopSupervisor(ctx context.Context, id string, force, discard bool) error {
	st := c.store()
	b, ok, _ := supervisor.ReadBootstrap(st.Path(id, supervisor.BootstrapFile))
	if !ok {
		return nil
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	sess, err := supervisor.Dial(dctx, b.Socket)
	cancel()
	if err == nil {
		err = supervisor.Call(ctx, sess, supervisor.OpShutdown, supervisor.ShutdownRequest{Force: force, Discard: discard}, nil)
		sess.Close()
		var ae *agentproto.Error
		if errors.As(err, &ae) && ae.Code == "busy" {
			return errs.New(errs.Conflict, "wait for it to finish, or pass --force", "workspace %s is busy: %s", id, ae.Message)
		}
		// Wait for the supervisor to finish its clean stop.
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			if _, ok, _ := supervisor.ReadBootstrap(st.Path(id, supervisor.BootstrapFile)); !ok {
				return nil
			}
			if id, err := supervisor.ProcessIdentity(b.PID); err != nil || id != b.StartTime {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	supervisor.KillRunning(st, id)
	return nil
}

// lockedRecord takes a workspace's lock and reads its record under it.
// The caller unlocks.
func (c *Client) lockedRecord(ctx context.Context, id string) (*store.Record, *fsutil.Lock, error) {
	st := c.store()
	lock, err := st.Lock(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	var rec store.Record
	if err := st.Read(id, &rec); err != nil {
		lock.Unlock()
		return nil, nil, err
	}
	return &rec, lock, nil
}

// StopWorkspace stops a workspace's VM, keeping its disk.
func (c *Client) StopWorkspace(ctx context.Context, ref string) (*Workspace, error) {
	id, err := c.resolve(ref)
	if err != nil {
		return nil, err
	}
	if err := c.stopSupervisor(ctx, id, true, false); err != nil {
		return nil, err
	}
	st := c.store()
	rec, lock, err := c.lockedRecord(ctx, id)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	rec.State = store.StateStopped
	rec.LastError = ""
	if err := st.Write(id, rec); err != nil {
		return nil, err
	}
	return workspacePayload(rec), nil
}

// StartWorkspace boots a stopped workspace again with the same disk.
func (c *Client) StartWorkspace(ctx context.Context, ref string) (*Workspace, error) {
	id, err := c.resolve(ref)
	if err != nil {
		return nil, err
	}
	rec, sess, err := c.reconcile(ctx, id)
	if err != nil {
		return nil, err
	}
	if sess != nil {
		sess.Close()
		return workspacePayload(rec), nil
	}
	agent, err := c.agentBinary()
	if err != nil {
		return nil, err
	}
	st := c.store()
	lock, err := st.Lock(ctx, id)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	c.opts.Progress.Phase("start", "workspace_id", id)
	if err := c.spawn(ctx, rec, agent); err != nil {
		supervisor.KillRunning(st, id)
		return nil, err
	}
	if err := st.Read(id, rec); err != nil {
		return nil, err
	}
	rec.State, rec.LastError, rec.LastActivity = store.StateStarted, "", time.Now().UTC()
	if err := st.Write(id, rec); err != nil {
		return nil, err
	}
	return workspacePayload(rec), nil
}
