package kernel

import (
	"bytes"
	"encoding/binary"
)

// moduleSigMagic ends a module that carries an appended signature.
const moduleSigMagic = "~Module signature appended~\n"

// StripSignature returns a kernel module without its appended signature,
// or the module unchanged when it has none or the trailer is malformed.
//
// The guest kernel would otherwise verify each module's RSA signature as
// it loads, which under TCG costs tens of milliseconds per module. The
// modules come from a Debian package whose signature apt has already
// checked, and the guest kernel does not enforce module signatures
// (CONFIG_MODULE_SIG_FORCE is off), so the check adds time, not trust.
func StripSignature(ko []byte) []byte {
	// struct module_signature: algo, hash, id_type, signer_len, key_id_len,
	// pad[3], sig_len (big endian u32): 12 bytes before the magic.
	const sigInfoLen = 12
	if !bytes.HasSuffix(ko, []byte(moduleSigMagic)) || len(ko) < len(moduleSigMagic)+sigInfoLen {
		return ko
	}
	end := len(ko) - len(moduleSigMagic)
	info := ko[end-sigInfoLen : end]
	sigLen := int(binary.BigEndian.Uint32(info[8:12]))
	signerLen, keyIDLen := int(info[3]), int(info[4])
	total := sigInfoLen + sigLen + signerLen + keyIDLen
	if sigLen <= 0 || total > end {
		return ko
	}
	return ko[:end-sigInfoLen-sigLen-signerLen-keyIDLen]
}
