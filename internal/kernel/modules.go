package kernel

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// maxModuleSize bounds a .ko file we parse; the largest Debian module is a
// few MiB.
const maxModuleSize = 64 << 20

// Module is a loadable kernel module.
type Module struct {
	// Name is the module's name as the kernel knows it (modinfo name=),
	// spelt with '_' even when its file name uses '-'.
	Name string
	// Path is the module's .ko file.
	Path string
	// Depends lists the modules that must be loaded before this one.
	Depends []string
}

// ResolveModules finds the modules named in want, and every module they
// depend on, under modulesDir (a lib/modules/<release> directory), and
// returns them in an order they can be loaded in: dependencies first, each
// module once. It reads dependencies from each module's .modinfo, so it
// needs no modules.dep. Modules listed in modulesDir/modules.builtin are
// part of the kernel image and are left out.
func ResolveModules(modulesDir string, want []string) ([]Module, error) {
	files, err := indexModules(modulesDir)
	if err != nil {
		return nil, err
	}
	builtin, err := readBuiltin(filepath.Join(modulesDir, "modules.builtin"))
	if err != nil {
		return nil, err
	}
	r := &resolver{files: files, builtin: builtin, state: make(map[string]visit)}
	for _, name := range want {
		name = moduleName(name)
		if !validModuleName(name) {
			return nil, fmt.Errorf("invalid module name %q", name)
		}
		if err := r.visit(name, nil); err != nil {
			return nil, err
		}
	}
	return r.order, nil
}

type visit int

const (
	unvisited visit = iota
	visiting
	visited
)

type resolver struct {
	files   map[string][]string // module name -> .ko paths
	builtin map[string]bool
	state   map[string]visit
	order   []Module
}

// visit appends name after its dependencies; stack holds the modules that
// (transitively) depend on it, to report cycles and missing modules.
func (r *resolver) visit(name string, stack []string) error {
	switch r.state[name] {
	case visited:
		return nil
	case visiting:
		i := len(stack) - 1
		for stack[i] != name {
			i--
		}
		return fmt.Errorf("module dependency cycle: %s -> %s", strings.Join(stack[i:], " -> "), name)
	}
	if r.builtin[name] {
		r.state[name] = visited
		return nil
	}
	paths := r.files[name]
	switch {
	case len(paths) == 0 && len(stack) > 0:
		return fmt.Errorf("module %s (needed by %s) not found", name, stack[len(stack)-1])
	case len(paths) == 0:
		return fmt.Errorf("module %s not found", name)
	case len(paths) > 1:
		return fmt.Errorf("module %s is ambiguous: %s", name, strings.Join(paths, ", "))
	}
	m, err := readModule(paths[0])
	if err != nil {
		return err
	}
	if m.Name != name {
		return fmt.Errorf("%s: modinfo names it %s, not %s", m.Path, m.Name, name)
	}
	r.state[name] = visiting
	for _, dep := range m.Depends {
		if err := r.visit(dep, append(stack, name)); err != nil {
			return err
		}
	}
	r.state[name] = visited
	r.order = append(r.order, m)
	return nil
}

// indexModules maps module names to .ko files by file name, which is what
// the kernel build derives the name from (KBUILD_MODNAME); readModule checks
// it against modinfo.
func indexModules(dir string) (map[string][]string, error) {
	files := make(map[string][]string)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && strings.HasSuffix(d.Name(), ".ko") {
			name := moduleName(strings.TrimSuffix(d.Name(), ".ko"))
			files[name] = append(files[name], path)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("indexing modules: %w", err)
	}
	return files, nil
}

// readBuiltin reads modules.builtin (kernel/fs/binfmt_script.ko, one a
// line); a missing file means nothing is known to be built in.
func readBuiltin(path string) (map[string]bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading builtin modules: %w", err)
	}
	defer f.Close()
	builtin := make(map[string]bool)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if base := filepath.Base(strings.TrimSpace(sc.Text())); strings.HasSuffix(base, ".ko") {
			builtin[moduleName(strings.TrimSuffix(base, ".ko"))] = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading builtin modules: %w", err)
	}
	return builtin, nil
}

// readModule reads a module's name and dependencies from the NUL-separated
// key=value strings of its .modinfo section.
func readModule(path string) (Module, error) {
	m := Module{Path: path}
	f, err := os.Open(path)
	if err != nil {
		return m, fmt.Errorf("reading module: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return m, fmt.Errorf("reading module: %w", err)
	}
	if fi.Size() > maxModuleSize {
		return m, fmt.Errorf("module %s is %d bytes, over the %d-byte limit", path, fi.Size(), maxModuleSize)
	}
	ef, err := elf.NewFile(f)
	if err != nil {
		return m, fmt.Errorf("reading module %s: %w", path, err)
	}
	sec := ef.Section(".modinfo")
	if sec == nil {
		return m, fmt.Errorf("module %s has no .modinfo section", path)
	}
	info, err := sec.Data()
	if err != nil {
		return m, fmt.Errorf("reading .modinfo of %s: %w", path, err)
	}
	for field := range bytes.SplitSeq(info, []byte{0}) {
		key, value, _ := strings.Cut(string(field), "=")
		switch key {
		case "name":
			m.Name = value
		case "depends":
			for dep := range strings.SplitSeq(value, ",") {
				if dep != "" {
					m.Depends = append(m.Depends, moduleName(dep))
				}
			}
		}
	}
	if m.Name == "" {
		// Without a name= field the kernel names a module after its file.
		m.Name = moduleName(strings.TrimSuffix(filepath.Base(path), ".ko"))
	}
	for _, name := range append([]string{m.Name}, m.Depends...) {
		if !validModuleName(name) {
			return m, fmt.Errorf("module %s: invalid module name %q in .modinfo", path, name)
		}
	}
	return m, nil
}

// moduleName spells a module or file name the way the kernel does: '-' and
// '_' are interchangeable in module names and the kernel uses '_'.
func moduleName(s string) string {
	return strings.ReplaceAll(s, "-", "_")
}

// validModuleName keeps names from .modinfo safe to use as file names.
func validModuleName(name string) bool {
	if name == "" || len(name) > 56 { // MODULE_NAME_LEN - 1
		return false
	}
	for _, c := range name {
		if !(c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}
