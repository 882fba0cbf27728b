package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/backpack-field/backpack/bundles"
	"github.com/backpack-field/backpack/internal/canon"
	bplog "github.com/backpack-field/backpack/log"
)

// ErrNotFullBundle: join needs a full-history bundle (a full export, which
// carries the backpack's static files), and got a delta or an older
// bundle without files.
var ErrNotFullBundle = errors.New("not a full-history bundle: export it without --since")

// JoinBundle makes newDir a new device of the backpack that the full
// export bd carries (read from source, which names it in the import's
// records): it writes the carried static files (genesis, keys.json,
// policies) byte for byte, imports the events as any import does (each
// checked against the carried keys.json), then gives the device its own
// key as Join does. The result holds the same events, in the same order,
// as a replica joined from the sender's directory.
//
// The carried keys.json is the one place where keys a bundle carries are
// used: the person chose to join the backpack in this bundle. Even so,
// the bundle's signature must verify with a key that keys.json lists as
// active, and the carried genesis must name the bundle's backpack_uid.
func JoinBundle(ctx context.Context, bd *bundles.Bundle, source, newDir string, opts JoinOptions) (*JoinResult, error) {
	h := &bd.Header
	if !h.Full() || h.Files == nil {
		return nil, ErrNotFullBundle
	}
	files := map[string][]byte{}
	for _, f := range h.Files {
		files[f.Path] = f.Data
	}
	gv, err := canon.Limits{MaxSize: 1 << 20}.Parse(files[GenesisPath])
	if err != nil {
		return nil, fmt.Errorf("store: the bundle's %s: %w", GenesisPath, err)
	}
	if uid := gv.Field("uid").Str(); uid != h.UID {
		return nil, fmt.Errorf("store: the bundle's %s names backpack %q, its header %q", GenesisPath, uid, h.UID)
	}
	reg, err := bplog.ParseRegistry(files[KeysPath])
	if err != nil {
		return nil, fmt.Errorf("store: the bundle's %s: %w", KeysPath, err)
	}
	switch err := bd.VerifySignature(reg); {
	case errors.Is(err, bundles.ErrUnknownSender):
		return nil, fmt.Errorf("store: the bundle's sender %s is not an active key of the backpack it carries (%s): %w", h.SenderKeyID, KeysPath, err)
	case err != nil:
		return nil, fmt.Errorf("store: the bundle's signature: %w", err)
	}

	if ents, err := os.ReadDir(newDir); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("store: %s is not empty", newDir)
	}
	abs, err := filepath.Abs(newDir)
	if err != nil {
		return nil, err
	}
	_, statErr := os.Stat(abs)
	created := errors.Is(statErr, os.ErrNotExist)
	res, err := joinBundleInto(ctx, bd, source, abs, opts)
	if err != nil && created {
		os.RemoveAll(abs)
	}
	return res, err
}

func joinBundleInto(ctx context.Context, bd *bundles.Bundle, source, abs string, opts JoinOptions) (*JoinResult, error) {
	for _, d := range requiredDirs {
		if err := os.MkdirAll(filepath.Join(abs, filepath.FromSlash(d)), 0o755); err != nil {
			return nil, err
		}
	}
	for _, f := range bd.Header.Files {
		// Decode checked every path (bundles.CheckFilePath): relative,
		// no "..", no hidden or private-key names.
		rel := filepath.FromSlash(f.Path)
		if !filepath.IsLocal(rel) {
			return nil, fmt.Errorf("bug: bundle file path %q is not local", f.Path)
		}
		target := filepath.Join(abs, rel)
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return nil, err
		}
		if err := writeFileAtomic(target, f.Data, 0o644); err != nil {
			return nil, err
		}
	}
	if err := writeFileAtomic(filepath.Join(abs, filepath.FromSlash(EventsPath)), nil, 0o644); err != nil {
		return nil, err
	}
	res, err := newDevice(bd.Header.UID, abs, opts)
	if err != nil {
		return nil, err
	}
	b, err := Open(ctx, abs, Options{KeyFile: res.KeyFile})
	if err != nil {
		return nil, err
	}
	in, err := b.Ingest(ctx, bd.Events, source)
	if cerr := b.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if err := reopen(ctx, abs, res.KeyFile); err != nil {
		return nil, err
	}
	res.Imported = len(in.Applied)
	res.Held = len(in.Quarantined) + len(in.Pending) + len(in.Rejected)
	return res, nil
}
