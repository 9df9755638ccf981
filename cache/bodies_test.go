package cache

import (
	"bytes"
	"sync"
	"testing"
)

func TestBodiesReserveFillTake(t *testing.T) {
	budget := NewBudget(100)
	s := NewBodies(budget, 60)
	k1, k2, h1 := BodyKey{UID: 1}, BodyKey{UID: 2}, BodyKey{UID: 1, Header: true}

	if !s.Reserve(k1, 40) {
		t.Fatal("Reserve 40 of 60 refused")
	}
	if s.Reserve(k1, 1) {
		t.Error("a key reserved twice")
	}
	if s.Reserve(k2, 21) {
		t.Error("session limit exceeded: 40 + 21 > 60")
	}
	if !s.Reserve(h1, 20) || s.Room() != 0 {
		t.Fatalf("Room %d after 60 of 60", s.Room())
	}
	if s.Fill(k1, bytes.Repeat([]byte("x"), 41)) {
		t.Error("a body larger than its reservation was kept")
	}
	if !s.Fill(k1, []byte("hello")) {
		t.Fatal("Fill refused")
	}
	// The unused 35 octets of the reservation went back.
	if s.Held() != 25 || budget.Used() != 25 || s.Reserved(k1) != 5 {
		t.Errorf("held %d, budget %d, reserved %d; want 25, 25, 5", s.Held(), budget.Used(), s.Reserved(k1))
	}
	if s.Fill(k1, []byte("again")) || s.Fill(k2, []byte("x")) {
		t.Error("Fill of a filled or unreserved key")
	}
	if s.Filled(h1) || !s.Filled(k1) {
		t.Error("Filled wrong")
	}
	data, ok := s.Take(k1)
	if !ok || string(data) != "hello" {
		t.Fatalf("Take = %q, %v", data, ok)
	}
	if _, ok := s.Take(k1); ok {
		t.Error("taken twice")
	}
	// Lent octets stay held until Free.
	if s.Held() != 25 {
		t.Errorf("held %d while lent, want 25", s.Held())
	}
	s.Free(int64(len(data)))
	s.Drop(h1)
	if s.Held() != 0 || budget.Used() != 0 {
		t.Errorf("held %d, budget %d after Free and Drop", s.Held(), budget.Used())
	}
	if budget.Served() != 1 {
		t.Errorf("Served %d, want 1", budget.Served())
	}
	if s.Peak() != 60 || budget.Peak() != 60 {
		t.Errorf("peaks %d, %d, want 60", s.Peak(), budget.Peak())
	}
}

func TestBodiesCloseReturnsEverything(t *testing.T) {
	budget := NewBudget(1000)
	s := NewBodies(budget, 500)
	s.Reserve(BodyKey{UID: 1}, 100)
	s.Reserve(BodyKey{UID: 2}, 100)
	s.Fill(BodyKey{UID: 2}, make([]byte, 50))
	lent, _ := s.Take(BodyKey{UID: 2})
	s.Close()
	if budget.Used() != 0 || s.Held() != 0 {
		t.Fatalf("budget %d, held %d after Close", budget.Used(), s.Held())
	}
	s.Free(int64(len(lent))) // a body closed after its session: no double release
	if budget.Used() != 0 {
		t.Errorf("budget %d after a late Free", budget.Used())
	}
	if s.Reserve(BodyKey{UID: 3}, 1) {
		t.Error("Reserve after Close")
	}
}

// TestBudgetConcurrent: many sessions racing for one budget never hold
// more than it, and give everything back.
func TestBudgetConcurrent(t *testing.T) {
	budget := NewBudget(10_000)
	var wg sync.WaitGroup
	for g := range 200 {
		wg.Go(func() {
			s := NewBodies(budget, 300)
			for i := range 100 {
				k := BodyKey{UID: uint32(i)}
				if s.Reserve(k, int64(1+(g+i)%100)) {
					s.Fill(k, make([]byte, (g+i)%50))
					if i%3 == 0 {
						if d, ok := s.Take(k); ok {
							s.Free(int64(len(d)))
						}
					}
				}
				if i%10 == 0 {
					s.Drop(BodyKey{UID: uint32(i - 5)})
				}
			}
			s.Close()
		})
	}
	wg.Wait()
	if budget.Used() != 0 {
		t.Errorf("budget %d in use after every session closed", budget.Used())
	}
	if budget.Peak() > budget.Limit() || budget.Peak() == 0 {
		t.Errorf("peak %d, limit %d", budget.Peak(), budget.Limit())
	}
}

func TestBodiesOff(t *testing.T) {
	if NewBudget(0) != nil || NewBodies(nil, 100) != nil || NewBodies(NewBudget(10), 0) != nil {
		t.Fatal("a zero budget or limit is not off")
	}
	var s *Bodies
	if s.Reserve(BodyKey{}, 1) || s.Fill(BodyKey{}, nil) || s.Filled(BodyKey{}) || s.Room() != 0 || s.Held() != 0 {
		t.Error("nil Bodies holds something")
	}
	if _, ok := s.Take(BodyKey{}); ok {
		t.Error("nil Bodies lent a body")
	}
	s.Drop(BodyKey{})
	s.Free(1)
	s.Close()
	if NewBodies(NewBudget(10), 100).Limit() != 10 {
		t.Error("session limit not capped at the budget")
	}
}
