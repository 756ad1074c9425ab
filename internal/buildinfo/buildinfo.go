// Package buildinfo says which build of pyro is running.
package buildinfo

import "runtime/debug"

// version is set at link time by the Makefile
// (-X github.com/pyro-sandbox/pyro/internal/buildinfo.version=...).
var version string

// Version is the release of this binary, or the VCS revision it was built
// from, or "dev".
func Version() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "dev-" + s.Value[:12]
			}
		}
	}
	return "dev"
}
