package config

import (
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDefaultsAreThePlatformsAndUseDevKeys(t *testing.T) {
	c, err := FromEnv(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 54321 || c.CronSchedule != "0 2 * * *" || c.RealtimeMaxEventsPerSec != 10 ||
		c.RoomIdleTimeout != 24*time.Hour || c.SyncStateRetention != 6*time.Hour || c.SyncTolerance != 2*time.Second ||
		c.PresenceInterval != 3*time.Second || c.SyncLeadTime != 300*time.Millisecond || c.CORSAllowOrigin != "*" ||
		!c.RealtimeCluster {
		t.Errorf("defaults: %+v", c)
	}
	if c.SyncControlLimit != (Limit{2, time.Second}) || c.RoomCreationLimit != (Limit{10, time.Hour}) ||
		c.CommentsLimit != (Limit{5, time.Minute}) || c.RoomManagementLimit != (Limit{20, time.Hour}) {
		t.Errorf("limits: %v %v %v %v", c.SyncControlLimit, c.RoomCreationLimit, c.CommentsLimit, c.RoomManagementLimit)
	}
	if !c.UsingDevKeys || c.JWTSecret != DevJWTSecret || c.PublishableKey != DevPublishableKey {
		t.Errorf("dev keys not applied")
	}
}

func TestDatabaseURLFallsBackToDATABASE_URL(t *testing.T) {
	c, err := FromEnv(env(map[string]string{"DATABASE_URL": "postgres://b"}))
	if err != nil || c.DBURL != "postgres://b" {
		t.Fatalf("%v %v", c, err)
	}
	c, _ = FromEnv(env(map[string]string{"DATABASE_URL": "postgres://b", "SUPABASE_DB_URL": "postgres://a"}))
	if c.DBURL != "postgres://a" {
		t.Fatalf("SUPABASE_DB_URL must win, got %s", c.DBURL)
	}
}

func TestPartialKeysAreNotCompletedWithDevKeys(t *testing.T) {
	c, err := FromEnv(env(map[string]string{"SUPABASE_JWT_SECRET": strings.Repeat("s", 40)}))
	if err != nil {
		t.Fatal(err)
	}
	if c.UsingDevKeys || c.PublishableKey != "" || c.SecretKey != "" {
		t.Fatalf("a configured secret must not be mixed with public demo keys: %+v", c)
	}
}

func TestInvalidConfiguration(t *testing.T) {
	for name, m := range map[string]map[string]string{
		"production with dev keys":    {"ANIMESYNC_ENV": "production"},
		"production with demo secret": {"ANIMESYNC_ENV": "production", "SUPABASE_JWT_SECRET": DevJWTSecret},
		"unknown env":                 {"ANIMESYNC_ENV": "staging"},
		"bad port":                    {"PORT": "http"},
		"port out of range":           {"PORT": "70000"},
		"bad duration":                {"SYNC_TOLERANCE": "two seconds"},
		"bad limit":                   {"RATE_LIMIT_SYNC_CONTROL": "2 per second"},
		"bad bool":                    {"METRICS_ENABLED": "maybe"},
		"bad log level":               {"LOG_LEVEL": "loud"},
		"short secret":                {"SUPABASE_JWT_SECRET": "short"},
		"bad upstream":                {"SUPABASE_URL": "ftp://x"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := FromEnv(env(m)); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	c, err := FromEnv(env(map[string]string{"ANIMESYNC_ENV": "production", "SUPABASE_JWT_SECRET": strings.Repeat("p", 40),
		"RATE_LIMIT_SYNC_CONTROL": "100/1s", "SUPABASE_URL": "https://abc.supabase.co"}))
	if err != nil {
		t.Fatalf("production with its own secret: %v", err)
	}
	if c.SyncControlLimit != (Limit{100, time.Second}) || c.JWKSURL != "https://abc.supabase.co/auth/v1/.well-known/jwks.json" {
		t.Errorf("%+v", c)
	}
}

func TestIdentityModeDefaultsToOpenAndRefusesOthers(t *testing.T) {
	c, err := FromEnv(env(nil))
	if err != nil || c.Identity != IdentityOpen || c.MemberIdentity() {
		t.Fatalf("default: %v %v", c, err)
	}
	c, err = FromEnv(env(map[string]string{"ANIMESYNC_IDENTITY": "member"}))
	if err != nil || !c.MemberIdentity() {
		t.Fatalf("member: %v %v", c, err)
	}
	if _, err := FromEnv(env(map[string]string{"ANIMESYNC_IDENTITY": "closed"})); err == nil || !strings.Contains(err.Error(), "ANIMESYNC_IDENTITY") {
		t.Fatalf("unknown mode: %v", err)
	}
}

func TestProductionInOpenModeWarnsOnce(t *testing.T) {
	prod := map[string]string{"ANIMESYNC_ENV": "production", "SUPABASE_JWT_SECRET": strings.Repeat("p", 40)}
	c, err := FromEnv(env(prod))
	if err != nil {
		t.Fatal(err)
	}
	w := c.Warnings()
	if len(w) != 1 || !strings.Contains(w[0], "ANIMESYNC_IDENTITY=open") || !strings.Contains(w[0], "ANIMESYNC_IDENTITY=member") {
		t.Fatalf("warnings: %q", w)
	}
	prod["ANIMESYNC_IDENTITY"] = "member"
	if c, _ = FromEnv(env(prod)); len(c.Warnings()) != 0 {
		t.Fatalf("member mode in production warns: %q", c.Warnings())
	}
	if c, _ = FromEnv(env(nil)); len(c.Warnings()) != 0 {
		t.Fatalf("development warns: %q", c.Warnings())
	}
}
