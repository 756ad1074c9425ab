package flatten

import (
	"fmt"
	"path"
	"strings"
)

// cleanName cleans an entry name (or hard link target) as if root were "/"
// and returns it relative to root, "." for root itself. A non-empty rule says
// why the name is refused.
func cleanName(name string) (clean, rule string) {
	if len(name) > maxNameLen {
		return "", fmt.Sprintf("name longer than %d bytes", maxNameLen)
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", "name contains a NUL byte"
	}
	for c := range strings.SplitSeq(name, "/") {
		if c == ".." {
			return "", `name has a ".." component`
		}
		if len(c) > maxComponent {
			return "", fmt.Sprintf("name has a component longer than %d bytes", maxComponent)
		}
	}
	// No ".." is left, so Clean only drops "/", "." and empty components.
	clean = path.Clean("/" + name)[1:]
	if clean == "" {
		return ".", ""
	}
	if n := strings.Count(clean, "/") + 1; n > maxDepth {
		return "", fmt.Sprintf("name has more than %d components", maxDepth)
	}
	if dir, _ := path.Split(clean); strings.HasPrefix(dir, whiteoutPrefix) || strings.Contains(dir, "/"+whiteoutPrefix) {
		return "", "a directory in the name is a whiteout"
	}
	return clean, ""
}
