package pyro

import (
	"context"
	"time"

	"github.com/pyro-sandbox/pyro/internal/env"
	"github.com/pyro-sandbox/pyro/internal/errs"
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
	if err := env.ValidateName(name); err != nil {
		return nil, err
	}
	s, err := env.Lookup(name)
	if err != nil {
		return nil, err
	}
	info := &EnvironmentInfo{Name: s.Name, Version: s.Version, Description: s.Description, State: c.envState(s), CachePath: c.cache.Dir}
	for _, p := range s.Packages {
		info.Packages = append(info.Packages, Package{Name: p})
	}
	m, err := c.cache.Installed(name)
	if err != nil {
		return info, nil
	}
	info.Installed = true
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
	// Action is "installed", "built" or "already_installed".
	Action     string `json:"action"`
	Source     string `json:"source"`
	Digest     string `json:"digest"`
	SizeBytes  int64  `json:"size_bytes"`
	DurationMs int64  `json:"duration_ms"`
}

// PullEnvironment makes an environment ready in the cache. Where no
// registry copy can be had it is built locally from Debian packages (which
// needs root). Concurrent pulls of one environment wait for each other; an
// interrupted pull leaves nothing that looks installed.
func (c *Client) PullEnvironment(ctx context.Context, name string) (*PullResult, error) {
	start := time.Now()
	if err := env.ValidateName(name); err != nil {
		return nil, err
	}
	s, err := env.Lookup(name)
	if err != nil {
		return nil, err
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
	if m, err := c.cache.Installed(name); err == nil && m.Version == s.Version {
		rep.Phase("ready", "environment", name)
		return result(m, "already_installed"), nil
	}
	rep.Phase("install", "environment", name)
	b := &env.Builder{Cache: c.cache, Progress: rep}
	m, err := b.Build(ctx, s)
	if err != nil {
		return nil, err
	}
	rep.Phase("ready", "environment", name)
	return result(m, "built"), nil
}

// PruneResult says what a prune removed.
type PruneResult = env.PruneResult

// PruneEnvironments removes installed environments the catalog no longer
// has (or has in a newer recipe), and every cached blob no installed
// environment uses.
func (c *Client) PruneEnvironments(ctx context.Context) (*PruneResult, error) {
	res, err := c.cache.Prune(ctx, func(m *env.Manifest) bool {
		s, err := env.Lookup(m.Name)
		return err == nil && s.Version == m.Version
	})
	if err != nil {
		return nil, err
	}
	if res.RemovedEnvironments == nil {
		res.RemovedEnvironments = []string{}
	}
	return &res, nil
}
