package pyro

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/pyro-sandbox/pyro/internal/env"
	"github.com/pyro-sandbox/pyro/internal/errs"
	"github.com/pyro-sandbox/pyro/internal/store"
)

// EnvironmentSummary is one line of the environment list.
type EnvironmentSummary struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Installed   bool   `json:"installed"`
	// State is "warm" (installed and current), "cold" (not installed) or
	// "stale" (installed from an older recipe).
	State string `json:"state"`
}

// EnvironmentList is the catalog with what is installed.
type EnvironmentList struct {
	CatalogVersion string               `json:"catalog_version"`
	Environments   []EnvironmentSummary `json:"environments"`
}

// ListEnvironments lists the catalog and which entries are installed.
func (c *Client) ListEnvironments(ctx context.Context) (*EnvironmentList, error) {
	out := &EnvironmentList{CatalogVersion: env.CatalogVersion}
	for _, s := range env.Catalog() {
		state := c.envState(s)
		out.Environments = append(out.Environments, EnvironmentSummary{
			Name: s.Name, Description: s.Description, Installed: state != "cold", State: state,
		})
	}
	installed, err := c.cache.List()
	if err != nil {
		return nil, err
	}
	for _, m := range installed {
		if _, err := env.Lookup(m.Name); err == nil {
			continue
		}
		out.Environments = append(out.Environments, EnvironmentSummary{Name: m.Name, Description: m.Description, Installed: true, State: "warm"})
	}
	return out, nil
}

func (c *Client) envState(s env.Spec) string {
	m, err := c.cache.Installed(s.Name)
	switch {
	case err != nil:
		return "cold"
	case m.Version != s.Version:
		return "stale"
	}
	return "warm"
}

// Package is one installed package of an environment.
type Package = env.Package

// EnvironmentInfo describes one environment.
type EnvironmentInfo struct {
	Name        string    `json:"name"`
	Version     string    `json:"version"`
	Description string    `json:"description"`
	Installed   bool      `json:"installed"`
	State       string    `json:"state"`
	Source      string    `json:"source,omitempty"`
	Digest      string    `json:"digest,omitempty"` // of the root filesystem
	SizeBytes   int64     `json:"size_bytes,omitempty"`
	Kernel      string    `json:"kernel,omitempty"`
	CachePath   string    `json:"cache_path"`
	CreatedAt   time.Time `json:"created_at,omitzero"`
	LastUsedAt  time.Time `json:"last_used_at,omitzero"`
	Packages    []Package `json:"packages"`
}

// InspectEnvironment describes an environment, installed or not.
func (c *Client) InspectEnvironment(ctx context.Context, name string) (*EnvironmentInfo, error) {
	name, image, err := env.CanonicalName(name)
	if err != nil {
		return nil, err
	}
	var info *EnvironmentInfo
	if image {
		info = &EnvironmentInfo{Name: name, Description: "OCI image " + name, State: "cold", CachePath: c.cache.Dir, Packages: []Package{}}
	} else {
		s, err := env.Lookup(name)
		if err != nil {
			return nil, err
		}
		info = &EnvironmentInfo{Name: s.Name, Version: s.Version, Description: s.Description, State: c.envState(s), CachePath: c.cache.Dir}
		for _, p := range s.Packages {
			info.Packages = append(info.Packages, Package{Name: p})
		}
	}
	m, err := c.cache.Installed(name)
	if err != nil {
		return info, nil
	}
	info.Installed = true
	if info.State == "cold" {
		info.State = "warm"
	}
	info.Version = m.Version
	info.Source = m.Source
	info.Digest = m.Rootfs.Digest
	info.SizeBytes = m.Size()
	info.Kernel = m.Kernel.Release
	info.CreatedAt = m.CreatedAt
	info.LastUsedAt = c.cache.LastUsed(name)
	info.Packages = m.Packages
	return info, nil
}

// PullResult says what a pull did.
type PullResult struct {
	Environment string `json:"environment"`
	Version     string `json:"version"`
	// Action is "pulled" (from a registry), "built" (locally) or
	// "already_installed".
	Action     string `json:"action"`
	Source     string `json:"source"`
	Digest     string `json:"digest"`
	SizeBytes  int64  `json:"size_bytes"`
	DurationMs int64  `json:"duration_ms"`
}

// PullRequest makes an environment ready.
type PullRequest struct {
	Environment string `json:"environment"`
	// Registry overrides where catalog artifacts come from ($PYRO_REGISTRY,
	// else the default).
	Registry string `json:"registry,omitempty"`
	// NoBuild fails rather than building locally when no registry copy can
	// be had.
	NoBuild bool `json:"no_build,omitempty"`
}

// PullEnvironment makes an environment ready in the cache: a catalog name
// is pulled from the registry as an OCI artifact, or built locally from
// Debian packages when no registry copy can be had (which needs root); an
// OCI image reference is pulled and turned into an environment. Concurrent
// pulls of one environment wait for each other; an interrupted pull leaves
// nothing that looks installed; a pull of an installed environment
// returns at once.
func (c *Client) PullEnvironment(ctx context.Context, name string) (*PullResult, error) {
	return c.Pull(ctx, PullRequest{Environment: name})
}

// Pull is PullEnvironment with options.
func (c *Client) Pull(ctx context.Context, req PullRequest) (*PullResult, error) {
	start := time.Now()
	name, image, err := env.CanonicalName(req.Environment)
	if err != nil {
		return nil, err
	}
	var spec env.Spec
	if !image {
		s, err := env.Lookup(name)
		if err != nil {
			return nil, err
		}
		spec = s
	}
	rep := c.opts.Progress
	lock, err := c.cache.Lock(ctx, name, func() {
		rep.Phase("wait", "environment", name, "reason", "another pull of it is running")
	})
	if err != nil {
		return nil, errs.Wrap(errs.KindOf(err), err, "", "waiting for another pull of %s", name)
	}
	defer lock.Unlock()
	result := func(m *env.Manifest, action string) *PullResult {
		return &PullResult{Environment: name, Version: m.Version, Action: action, Source: m.Source,
			Digest: m.Rootfs.Digest, SizeBytes: m.Size(), DurationMs: time.Since(start).Milliseconds()}
	}
	if m, err := c.cache.Installed(name); err == nil && (image || m.Version == spec.Version) {
		rep.Phase("ready", "environment", name)
		return result(m, "already_installed"), nil
	}
	rep.Phase("install", "environment", name)
	if image {
		kernelFrom, err := c.cache.KernelSource()
		if err != nil {
			// The image boots with the catalog's kernel: get the smallest
			// catalog environment first.
			lock.Unlock()
			if _, err := c.Pull(ctx, PullRequest{Environment: "debian:12-base", Registry: req.Registry, NoBuild: req.NoBuild}); err != nil {
				return nil, errs.Wrap(errs.KindOf(err), err, errs.HintOf(err), "getting the catalog kernel for %s", name)
			}
			if lock, err = c.cache.Lock(ctx, name, nil); err != nil {
				return nil, err
			}
			if kernelFrom, err = c.cache.KernelSource(); err != nil {
				return nil, err
			}
		}
		m, err := c.cache.PullImage(ctx, name, kernelFrom, rep)
		if err != nil {
			return nil, err
		}
		rep.Phase("ready", "environment", name)
		return result(m, "pulled"), nil
	}
	ref := env.ArtifactRef(env.Registry(req.Registry), spec)
	rep.Phase("fetch", "environment", name, "ref", ref)
	m, err := c.cache.PullArtifact(ctx, ref, spec.Name, rep)
	if err == nil {
		rep.Phase("ready", "environment", name)
		return result(m, "pulled"), nil
	}
	if !errors.Is(err, env.ErrRegistryUnavailable) {
		return nil, err
	}
	if req.NoBuild {
		return nil, errs.Wrap(errs.Unavailable, err, "drop --no-build to build it locally, or set PYRO_REGISTRY to a registry that has it", "no registry copy of %s", name)
	}
	rep.Phase("build", "environment", name, "reason", firstLine(err.Error()))
	b := &env.Builder{Cache: c.cache, Progress: rep}
	m, err = b.Build(ctx, spec)
	if err != nil {
		return nil, err
	}
	rep.Phase("ready", "environment", name)
	return result(m, "built"), nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	if len(line) > 200 {
		line = line[:200] + "…"
	}
	return line
}

// PushResult says where an environment was published.
type PushResult struct {
	Environment string `json:"environment"`
	Reference   string `json:"reference"`
	Digest      string `json:"digest"`
	SizeBytes   int64  `json:"size_bytes"`
}

// PushEnvironment publishes an installed environment as an OCI artifact to
// ref: a registry reference, or "oci:DIR" for an OCI layout directory.
func (c *Client) PushEnvironment(ctx context.Context, name, ref string) (*PushResult, error) {
	name, _, err := env.CanonicalName(name)
	if err != nil {
		return nil, err
	}
	m, err := c.cache.Installed(name)
	if err != nil {
		return nil, err
	}
	c.opts.Progress.Phase("push", "environment", name, "ref", ref)
	digest, err := c.cache.Push(ctx, m, ref, c.opts.Progress)
	if err != nil {
		return nil, err
	}
	return &PushResult{Environment: name, Reference: ref, Digest: digest, SizeBytes: m.Size()}, nil
}

// PruneResult says what a prune removed.
type PruneResult = env.PruneResult

// PruneEnvironments removes installed environments that neither the
// catalog (in its current recipe) nor a workspace uses, and every cached
// blob nothing uses.
func (c *Client) PruneEnvironments(ctx context.Context) (*PruneResult, error) {
	// Environments and blobs a workspace boots from stay.
	used := map[string]bool{}
	inUse := map[string]bool{}
	ids, _ := c.store().IDs()
	for _, id := range ids {
		var r store.Record
		if c.store().Read(id, &r) == nil {
			inUse[r.Environment] = true
			for _, b := range r.Manifest.Blobs() {
				used[b.Digest] = true
			}
		}
	}
	res, err := c.cache.Prune(ctx, func(m *env.Manifest) bool {
		if inUse[m.Name] {
			return true
		}
		s, err := env.Lookup(m.Name)
		return err == nil && s.Version == m.Version
	}, used)
	if err != nil {
		return nil, err
	}
	if res.RemovedEnvironments == nil {
		res.RemovedEnvironments = []string{}
	}
	return &res, nil
}
