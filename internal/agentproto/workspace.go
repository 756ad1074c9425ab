package agentproto

// Operations on /workspace, protocol version 1. Paths in requests are
// relative to /workspace (or absolute under it); the agent confines every
// one of them to /workspace and refuses anything that resolves outside,
// through ".." or a symlink.
const (
	// OpTarIn extracts the tar stream sent on ChannelStdin into Path.
	OpTarIn Op = "tar.in"
	// OpTarOut sends Path (a file or a directory) as a tar stream on
	// ChannelStdout; symlinks are archived, never followed.
	OpTarOut Op = "tar.out"
	// OpFileList lists a directory.
	OpFileList Op = "file.list"
	// OpFileRead sends a regular file's bytes on ChannelStdout.
	OpFileRead Op = "file.read"
	// OpFileWrite replaces a file with the bytes sent on ChannelStdin.
	OpFileWrite Op = "file.write"
	// OpFileRemove removes a file or an empty directory.
	OpFileRemove Op = "file.remove"
	// OpDiff compares /workspace with its baseline.
	OpDiff Op = "diff"

	// OpPing answers at once: a round trip through the agent.
	OpPing Op = "ping"
	// OpSink reads ChannelStdin to its end and reports the byte count; with
	// OpSource (which sends Bytes zero bytes on ChannelStdout) it measures
	// the channel itself.
	OpSink   Op = "sink"
	OpSource Op = "source"
)

// SourceRequest asks for Bytes bytes.
type SourceRequest struct {
	Bytes int64 `json:"bytes"`
}

// CountResult counts bytes.
type CountResult struct {
	Bytes int64 `json:"bytes"`
}

// PathRequest names one path.
type PathRequest struct {
	Path string `json:"path"`
}

// TarInRequest extracts a tar stream under Path (created if missing).
type TarInRequest struct {
	Path string `json:"path"`
	// MaxBytes and MaxFiles bound the extraction; 0 means the agent's
	// defaults.
	MaxBytes int64 `json:"max_bytes,omitempty"`
	MaxFiles int64 `json:"max_files,omitempty"`
	// Baseline keeps the stream as the baseline that diffs compare
	// /workspace with (seeding at create and at reset).
	Baseline bool `json:"baseline,omitempty"`
}

// TarInResult is the event that ends OpTarIn.
type TarInResult struct {
	Files int64 `json:"files"`
	Bytes int64 `json:"bytes"`
}

// FileListRequest lists Path, recursively when asked.
type FileListRequest struct {
	Path       string `json:"path"`
	Recursive  bool   `json:"recursive,omitempty"`
	MaxEntries int    `json:"max_entries,omitempty"`
}

// FileEntry is one listed path.
type FileEntry struct {
	Path         string `json:"path"`
	ArtifactType string `json:"artifact_type"` // file, directory, symlink (other for the rest)
	SizeBytes    int64  `json:"size_bytes"`
	LinkTarget   string `json:"link_target,omitempty"`
}

// FileListResult is the event that answers OpFileList.
type FileListResult struct {
	Path      string      `json:"path"`
	Entries   []FileEntry `json:"entries"`
	Truncated bool        `json:"truncated"`
}

// FileReadRequest reads up to MaxBytes of Path.
type FileReadRequest struct {
	Path     string `json:"path"`
	MaxBytes int64  `json:"max_bytes"`
}

// FileReadResult is the event that ends OpFileRead, after the data.
type FileReadResult struct {
	Path      string `json:"path"`
	SizeBytes int64  `json:"size_bytes"`
	Truncated bool   `json:"truncated"`
}

// FileWriteRequest writes Path; parents are created.
type FileWriteRequest struct {
	Path     string `json:"path"`
	Mode     uint32 `json:"mode,omitempty"` // default: keep the old mode, else 0644
	MaxBytes int64  `json:"max_bytes,omitempty"`
}

// FileWriteResult is the event that ends OpFileWrite.
type FileWriteResult struct {
	Path         string `json:"path"`
	BytesWritten int64  `json:"bytes_written"`
}

// DiffRequest bounds a diff.
type DiffRequest struct {
	// MaxPatchBytes bounds the patch text; the summary is always whole.
	MaxPatchBytes int64 `json:"max_patch_bytes,omitempty"`
}

// DiffSummary counts the changes of /workspace against its baseline.
type DiffSummary struct {
	Added       int `json:"added"`
	Modified    int `json:"modified"`
	Deleted     int `json:"deleted"`
	Binary      int `json:"binary"`
	TypeChanged int `json:"type_changed"`
}

// DiffChange is one changed path.
type DiffChange struct {
	Path   string `json:"path"`
	Change string `json:"change"` // added, modified, deleted, type_changed
	Binary bool   `json:"binary,omitempty"`
}

// DiffResult is the event that ends OpDiff; the patch text comes before it
// on ChannelStdout.
type DiffResult struct {
	Changed      bool         `json:"changed"`
	Summary      DiffSummary  `json:"summary"`
	Changes      []DiffChange `json:"changes"`
	PatchTrunc   bool         `json:"patch_truncated"`
	ChangesTrunc bool         `json:"changes_truncated"`
}

// Names of the result events of workspace operations.
const (
	EventResult = "result"
)

// ResultEvent carries an operation's result. A result too large for an
// event (a long file list, a diff's change list) is sent as JSON on
// ChannelResult before the event, which then says OnData.
type ResultEvent[T any] struct {
	Event  string `json:"event"`
	Result T      `json:"result"`
	OnData bool   `json:"on_data,omitempty"`
}

// ChannelResult carries a result sent as data. Workspace operations use
// ChannelStdout for their payload (file bytes, tar streams, patch text).
const ChannelResult = ChannelStderr

// MaxResultBytes bounds a result sent as data.
const MaxResultBytes = 64 << 20
