package uidlmap

import (
	"context"
	"strings"

	"github.com/popbridge/popbridge/store"
)

// records is the part of store.Store that holds UIDL maps.
type records interface {
	UIDLMap(ctx context.Context, key string) ([]store.UIDLRecord, error)
	PutUIDLs(ctx context.Context, key string, recs []store.UIDLRecord) error
	UIDLsFor(ctx context.Context, key string, uidValidity uint32, uids []uint32, uidls []string) ([]store.UIDLRecord, error)
}

// OnStore is the UIDL map kept in the state store.
func OnStore(s records) NearStore { return onStore{s} }

type onStore struct{ s records }

func (o onStore) UIDLMap(ctx context.Context, key string) ([]Record, error) {
	return fromStore(o.s.UIDLMap(ctx, key))
}

func (o onStore) UIDLsFor(ctx context.Context, key string, uidValidity uint32, uids []uint32, uidls []string) ([]Record, error) {
	return fromStore(o.s.UIDLsFor(ctx, key, uidValidity, uids, uidls))
}

func fromStore(recs []store.UIDLRecord, err error) ([]Record, error) {
	if err != nil {
		return nil, err
	}
	out := make([]Record, len(recs))
	for i, r := range recs {
		out[i] = Record{UIDL: r.UIDL, UIDValidity: r.UIDValidity, UID: r.UID, Fingerprint: Fingerprint{
			Size: r.Size, MessageID: r.MessageID, Date: r.Date,
		}}
		// The store keeps both hashes in its one column: "header/body".
		out[i].Hash, out[i].Body, _ = strings.Cut(r.HeaderHash, "/")
	}
	return out, nil
}

func (o onStore) PutUIDLs(ctx context.Context, key string, recs []Record) error {
	out := make([]store.UIDLRecord, len(recs))
	for i, r := range recs {
		out[i] = store.UIDLRecord{
			UIDValidity: r.UIDValidity, UID: r.UID, UIDL: r.UIDL,
			Size: r.Size, MessageID: r.MessageID, Date: r.Date, HeaderHash: r.Hash,
		}
		if r.Body != "" {
			out[i].HeaderHash += "/" + r.Body
		}
	}
	return o.s.PutUIDLs(ctx, key, out)
}
