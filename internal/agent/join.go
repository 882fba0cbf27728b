package agent

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/backpack-field/backpack/bundles"
	"github.com/backpack-field/backpack/internal/pytime"
	"github.com/backpack-field/backpack/internal/store"
	bplog "github.com/backpack-field/backpack/log"
)

// JoinFolderOptions configures JoinFolder.
type JoinFolderOptions struct {
	UID     string // which backpack, when the folder holds several
	Actor   string // the new device's actor label
	KeyFile string // where its key goes (default: the key directory)
	// Wait is how long to wait for the other devices' agents to export a
	// full-history bundle when the folder holds none (0: do not wait).
	Wait   time.Duration
	Logger *slog.Logger
}

// ErrNoFullBundle means a peer folder holds no full-history bundle to
// join from.
var ErrNoFullBundle = errors.New("agent: no full-history bundle in the peer folder")

// JoinFolder makes newDir a new device of a backpack that syncs through
// the peer folder root. It joins from a full-history bundle some device
// left there (one carrying the backpack's genesis, keys.json and
// policies), then imports every other bundle in the folder, so the new
// device starts with everything the folder holds.
//
// When the folder holds no full-history bundle and opts.Wait is set, the
// new device announces itself first: it makes its key and writes its
// device.json and an empty signed frontier.json in its own directory of
// the folder, as an agent would. The agents of the other devices then see
// a device that holds nothing and export a full-history bundle for it,
// which JoinFolder waits for. The key it made is the device's key.
func JoinFolder(ctx context.Context, root, newDir string, opts JoinFolderOptions) (*store.JoinResult, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	uid, err := folderBackpack(root, opts.UID)
	if err != nil {
		return nil, err
	}
	bd := BackpackDir(root, uid)
	jopts := store.JoinOptions{Actor: opts.Actor, KeyFile: opts.KeyFile}
	full, err := findFullBundle(bd, uid)
	if errors.Is(err, ErrNoFullBundle) && opts.Wait > 0 {
		key, aerr := announce(bd, uid, opts.Actor)
		if aerr != nil {
			return nil, aerr
		}
		jopts.Key = &key
		opts.Logger.Info("announced this device in the peer folder; waiting for a full-history bundle",
			"device", filepath.Join(bd, key.ID), "wait", opts.Wait)
		deadline := time.Now().Add(opts.Wait)
		for errors.Is(err, ErrNoFullBundle) && time.Now().Before(deadline) {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(500 * time.Millisecond):
			}
			full, err = findFullBundle(bd, uid)
		}
	}
	if errors.Is(err, ErrNoFullBundle) && jopts.Key != nil {
		// Nobody answered: take the announcement back, or the agents
		// would keep bundles for a device that never comes.
		os.RemoveAll(filepath.Join(bd, jopts.Key.ID))
	}
	if errors.Is(err, ErrNoFullBundle) {
		return nil, fmt.Errorf("%w %s: every bundle there continues what its receivers held; run join with --wait so that the devices' agents export one for this device, or join from a device's directory or a `backpack export` file", err, bd)
	}
	if err != nil {
		return nil, err
	}
	res, err := store.JoinBundle(ctx, full.bundle, full.path, newDir, jopts)
	if err != nil {
		return nil, err
	}
	// Then everything else the folder holds.
	b, err := store.Open(ctx, res.Dir, store.Options{KeyFile: res.KeyFile, Logger: opts.Logger})
	if err != nil {
		return nil, err
	}
	defer b.Close()
	for _, p := range full.others {
		r, err := b.ImportBundle(ctx, p)
		if _, refused := errors.AsType[*store.RefusedError](err); refused {
			opts.Logger.Warn("bundle refused (kept in the quarantine)", "bundle", p, "err", err)
			continue
		}
		if err != nil {
			return nil, err
		}
		res.Imported += len(r.Applied)
		res.Held += len(r.Pending) + len(r.Quarantined) + len(r.Rejected)
	}
	held := 0
	for _, kind := range []string{"pending", "quarantine"} {
		hs, err := b.Held(kind)
		if err != nil {
			return nil, err
		}
		held += len(hs)
	}
	res.Held = held
	return res, nil
}

// folderBackpack returns the uid of the backpack the peer folder root
// holds (want, when given, must be one of them).
func folderBackpack(root, want string) (string, error) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return "", err
	}
	var uids []string
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "backpack-") {
			continue
		}
		uid, err := folderUID(filepath.Join(root, e.Name()))
		if err != nil {
			continue
		}
		if want == "" || uid == want {
			uids = append(uids, uid)
		}
	}
	switch {
	case len(uids) == 1:
		return uids[0], nil
	case len(uids) == 0 && want != "":
		return "", fmt.Errorf("peer folder %s holds no device of backpack %q", root, want)
	case len(uids) == 0:
		return "", fmt.Errorf("peer folder %s holds no backpack (no backpack-*/ directory with a device.json)", root)
	}
	sort.Strings(uids)
	return "", fmt.Errorf("peer folder %s holds several backpacks (%s): choose one with --uid", root, strings.Join(uids, ", "))
}

// folderUID returns the uid the device.json files of a backpack-*
// directory name.
func folderUID(bd string) (string, error) {
	devs, err := os.ReadDir(bd)
	if err != nil {
		return "", err
	}
	for _, d := range devs {
		data, err := os.ReadFile(filepath.Join(bd, d.Name(), "device.json"))
		if err != nil {
			continue
		}
		if dev, err := ParseDevice(data); err == nil && BackpackDir("", dev.UID) == filepath.Base(bd) {
			return dev.UID, nil
		}
	}
	return "", errors.New("no device.json")
}

// folderBundles is what findFullBundle found.
type folderBundles struct {
	path   string
	bundle *bundles.Bundle
	others []string // every other bundle, device by device, in order
}

// findFullBundle returns the newest full-history bundle of backpack uid in
// its folder directory bd (the one with the most events, the newest of
// equals), and every other bundle there.
func findFullBundle(bd, uid string) (*folderBundles, error) {
	devs, err := os.ReadDir(bd)
	if err != nil {
		return nil, err
	}
	var all []string
	for _, d := range devs {
		if !d.IsDir() {
			continue
		}
		ents, err := os.ReadDir(filepath.Join(bd, d.Name(), "bundles"))
		if err != nil {
			continue
		}
		for _, e := range ents {
			if _, ok := ParseBundleName(e.Name()); ok && e.Type().IsRegular() {
				all = append(all, filepath.Join(bd, d.Name(), "bundles", e.Name()))
			}
		}
	}
	out := &folderBundles{}
	for _, p := range all {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		b, err := bundles.Decode(f, bundles.Limits{})
		f.Close()
		if err != nil || b.Header.UID != uid || !b.Header.Full() || b.Header.Files == nil {
			continue
		}
		if out.bundle == nil || len(b.Events) >= len(out.bundle.Events) {
			out.path, out.bundle = p, b
		}
	}
	if out.bundle == nil {
		return nil, ErrNoFullBundle
	}
	for _, p := range all {
		if p != out.path {
			out.others = append(out.others, p)
		}
	}
	return out, nil
}

// announce makes a key for a device about to join and writes its
// device.json and an empty frontier.json into its directory in bd.
func announce(bd, uid, actor string) (bplog.PrivateKey, error) {
	key, err := bplog.GenerateKey(rand.Reader)
	if err != nil {
		return key, err
	}
	if actor == "" {
		actor = "backpack_" + strings.TrimPrefix(key.ID, bplog.KeyIDPrefix)
	}
	dir := filepath.Join(bd, key.ID)
	if err := os.MkdirAll(filepath.Join(dir, "bundles"), 0o755); err != nil {
		return key, err
	}
	dev := Device{UID: uid, KeyID: key.ID, Public: key.Public(), Actor: actor}
	if err := store.WriteFileAtomic(filepath.Join(dir, "device.json"), dev.Encode(), 0o644); err != nil {
		return key, err
	}
	pf := PeerFrontier{UID: uid, KeyID: key.ID, Seq: 1, Frontier: bplog.Frontier{}, UpdatedAt: pytime.FormatUTC(time.Now())}
	return key, store.WriteFileAtomic(filepath.Join(dir, "frontier.json"), pf.Sign(key.Key), 0o644)
}
