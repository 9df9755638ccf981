package oauth

import (
	"bytes"
	"context"
	"sync"
)

// memStore is an in-memory Store for unit tests until package store is
// in main; it counts writes so tests can prove what was not written.
type memStore struct {
	mu      sync.Mutex
	boxes   map[string]Mailbox
	creds   map[string]map[string]DeviceCredential
	locks   map[string]bool
	puts    int
	lockErr error
}

func newMemStore() *memStore {
	return &memStore{boxes: map[string]Mailbox{}, creds: map[string]map[string]DeviceCredential{}, locks: map[string]bool{}}
}

func (s *memStore) GetMailbox(_ context.Context, mb string) (Mailbox, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.boxes[mb]
	if !ok {
		return Mailbox{}, ErrNotFound
	}
	m.SealedGrant = bytes.Clone(m.SealedGrant)
	return m, nil
}

func (s *memStore) ListMailboxes(context.Context) ([]Mailbox, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var l []Mailbox
	for _, m := range s.boxes {
		l = append(l, m)
	}
	return l, nil
}

func (s *memStore) PutMailbox(_ context.Context, m Mailbox) (Mailbox, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.boxes[m.Mailbox].Version != m.Version {
		return Mailbox{}, ErrConflict
	}
	m.Version++
	s.boxes[m.Mailbox] = m
	s.puts++
	return m, nil
}

func (s *memStore) DeleteMailbox(_ context.Context, mb string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.boxes[mb]; !ok {
		return ErrNotFound
	}
	delete(s.boxes, mb)
	delete(s.creds, mb)
	return nil
}

func (s *memStore) PutDeviceCredential(_ context.Context, c DeviceCredential) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.creds[c.Mailbox] == nil {
		s.creds[c.Mailbox] = map[string]DeviceCredential{}
	}
	s.creds[c.Mailbox][c.Device] = c
	return nil
}

func (s *memStore) DeviceCredentials(_ context.Context, mb string) ([]DeviceCredential, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var l []DeviceCredential
	for _, c := range s.creds[mb] {
		l = append(l, c)
	}
	return l, nil
}

func (s *memStore) DeleteDeviceCredential(_ context.Context, mb, dev string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.creds[mb][dev]; !ok {
		return ErrNotFound
	}
	delete(s.creds[mb], dev)
	return nil
}

func (s *memStore) Lock(_ context.Context, key string) (func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lockErr != nil {
		return nil, s.lockErr
	}
	if s.locks[key] {
		return nil, ErrLocked
	}
	s.locks[key] = true
	return func() {
		s.mu.Lock()
		delete(s.locks, key)
		s.mu.Unlock()
	}, nil
}
