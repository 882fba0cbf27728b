package agent

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"

	"github.com/backpack-field/backpack/internal/canon"
	"github.com/backpack-field/backpack/internal/store"
	bplog "github.com/backpack-field/backpack/log"
)

// Formats of the files a device writes in its peer directory.
const (
	DeviceFormat   = "backpack.peer.v1"
	FrontierFormat = "backpack.peer.frontier.v1"
)

// maxPeerFile bounds device.json and frontier.json.
const maxPeerFile = 16 << 20

// ErrBadPeerFile is a device.json or frontier.json that does not parse or
// does not verify.
var ErrBadPeerFile = errors.New("agent: bad peer file")

// BackpackDir returns the directory of the backpack uid inside the peer
// folder root: root/backpack-<uid>, the uid made filename-safe as the
// store does for device directories.
func BackpackDir(root, uid string) string {
	return filepath.Join(root, "backpack-"+store.SafeName(uid))
}

// bundleName matches the names of bundle files in a device's bundles/.
var bundleName = regexp.MustCompile(`^([0-9]{10})-([0-9a-f]{16})\.bpb$`)

// BundleName returns the file name of a device's seq-th bundle whose
// bytes are data: <seq, 10 digits>-<first 16 hex of SHA-256>.bpb.
func BundleName(seq int64, data []byte) string {
	sum := sha256.Sum256(data)
	return fmt.Sprintf("%010d-%s.bpb", seq, hex.EncodeToString(sum[:8]))
}

// ParseBundleName returns the sequence number of a bundle file name, and
// false for a name that is not one (temp files, conflict copies).
func ParseBundleName(name string) (int64, bool) {
	m := bundleName.FindStringSubmatch(name)
	if m == nil {
		return 0, false
	}
	seq, err := strconv.ParseInt(m[1], 10, 64)
	return seq, err == nil
}

// Device is a peer directory's device.json.
type Device struct {
	UID    string
	KeyID  string
	Public ed25519.PublicKey
	Actor  string
}

// Encode returns device.json's bytes: canonical JSON, no newline.
func (d Device) Encode() []byte {
	var o canon.ObjectBuilder
	o.Set("format", canon.StringValue(DeviceFormat)).
		Set("uid", canon.StringValue(d.UID)).
		Set("key_id", canon.StringValue(d.KeyID)).
		Set("public_key_b64", canon.StringValue(base64.StdEncoding.EncodeToString(d.Public))).
		Set("actor", canon.StringValue(d.Actor))
	return canon.MustEncode(o.Value())
}

// ParseDevice parses device.json and checks that its public key derives
// its key id.
func ParseDevice(data []byte) (*Device, error) {
	v, err := canon.Limits{MaxSize: maxPeerFile}.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%w: device.json: %w", ErrBadPeerFile, err)
	}
	if v.Field("format").Str() != DeviceFormat {
		return nil, fmt.Errorf("%w: device.json: format is not %q", ErrBadPeerFile, DeviceFormat)
	}
	pub, err := base64.StdEncoding.DecodeString(v.Field("public_key_b64").Str())
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: device.json: public_key_b64 is not a 32-byte key", ErrBadPeerFile)
	}
	d := &Device{UID: v.Field("uid").Str(), KeyID: v.Field("key_id").Str(), Public: pub, Actor: v.Field("actor").Str()}
	if bplog.KeyID(pub) != d.KeyID {
		return nil, fmt.Errorf("%w: device.json: public key does not derive key_id %s", ErrBadPeerFile, d.KeyID)
	}
	return d, nil
}

// PeerFrontier is a device's frontier.json: what it held when it wrote it.
type PeerFrontier struct {
	UID       string
	KeyID     string
	Seq       int64 // increments with every write
	Frontier  bplog.Frontier
	UpdatedAt string // updated_at_utc, SPEC §3.3 form
}

func (p PeerFrontier) unsigned() canon.Value {
	var o canon.ObjectBuilder
	o.Set("format", canon.StringValue(FrontierFormat)).
		Set("uid", canon.StringValue(p.UID)).
		Set("key_id", canon.StringValue(p.KeyID)).
		Set("seq", canon.IntValue(p.Seq)).
		Set("frontier", p.Frontier.Value()).
		Set("updated_at_utc", canon.StringValue(p.UpdatedAt))
	return o.Value()
}

// Sign returns frontier.json's bytes: the canonical object with sig, the
// base64 Ed25519 signature by key over the canonical object without sig.
func (p PeerFrontier) Sign(key ed25519.PrivateKey) []byte {
	v := p.unsigned()
	sig := ed25519.Sign(key, canon.MustEncode(v))
	return canon.MustEncode(v.With("sig", canon.StringValue(base64.StdEncoding.EncodeToString(sig))))
}

// VerifyFrontier parses frontier.json and checks its signature with the
// key of dev (the device.json next to it) and that it names dev's key.
func VerifyFrontier(data []byte, dev *Device) (*PeerFrontier, error) {
	v, err := canon.Limits{MaxSize: maxPeerFile, MaxDepth: 8}.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%w: frontier.json: %w", ErrBadPeerFile, err)
	}
	if v.Field("format").Str() != FrontierFormat {
		return nil, fmt.Errorf("%w: frontier.json: format is not %q", ErrBadPeerFile, FrontierFormat)
	}
	seq, ok := v.Field("seq").Int64()
	if !ok || seq < 0 {
		return nil, fmt.Errorf("%w: frontier.json: seq is not a non-negative integer", ErrBadPeerFile)
	}
	f, err := bplog.FrontierFromValue(v.Field("frontier"))
	if err != nil {
		return nil, fmt.Errorf("%w: frontier.json: %w", ErrBadPeerFile, err)
	}
	p := &PeerFrontier{UID: v.Field("uid").Str(), KeyID: v.Field("key_id").Str(), Seq: seq, Frontier: f, UpdatedAt: v.Field("updated_at_utc").Str()}
	if p.KeyID != dev.KeyID {
		return nil, fmt.Errorf("%w: frontier.json: key_id %s is not the device's %s", ErrBadPeerFile, p.KeyID, dev.KeyID)
	}
	sig, err := base64.StdEncoding.DecodeString(v.Field("sig").Str())
	if err != nil || !ed25519.Verify(dev.Public, canon.MustEncode(v.Without("sig")), sig) {
		return nil, fmt.Errorf("%w: frontier.json: bad signature", ErrBadPeerFile)
	}
	// The signed bytes must be exactly what the fields say: re-encode.
	if !canon.Equal(v.Without("sig"), p.unsigned()) {
		return nil, fmt.Errorf("%w: frontier.json: unexpected members", ErrBadPeerFile)
	}
	return p, nil
}
