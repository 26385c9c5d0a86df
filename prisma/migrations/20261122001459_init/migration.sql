-- CreateEnum
CREATE TYPE "AccountStatus" AS ENUM ('pending', 'active', 'throttled', 'challenged', 'suspended');

-- CreateEnum
CREATE TYPE "AccountSource" AS ENUM ('signup', 'import');

-- CreateEnum
CREATE TYPE "SignupDecision" AS ENUM ('allow', 'challenge', 'deny');

-- CreateEnum
CREATE TYPE "VerificationKind" AS ENUM ('email', 'phone');

-- CreateEnum
CREATE TYPE "KeyStatus" AS ENUM ('active', 'revoked');

-- CreateEnum
CREATE TYPE "RuleKind" AS ENUM ('cidr', 'asn', 'email_domain', 'email_pattern');

-- CreateEnum
CREATE TYPE "RuleMode" AS ENUM ('block', 'challenge', 'allow');

-- CreateEnum
CREATE TYPE "ClusterAction" AS ENUM ('none', 'review', 'throttle', 'challenge', 'suspend');

-- CreateTable
CREATE TABLE "accounts" (
    "id" TEXT NOT NULL,
    "external_id" TEXT,
    "email" TEXT NOT NULL,
    "email_canonical_hash" TEXT NOT NULL,
    "email_domain" TEXT NOT NULL,
    "email_verified_at" TIMESTAMPTZ(3),
    "phone" TEXT,
    "phone_verified_at" TIMESTAMPTZ(3),
    "status" "AccountStatus" NOT NULL DEFAULT 'pending',
    "status_reason" TEXT,
    "tier" TEXT NOT NULL DEFAULT 'free',
    "risk" DOUBLE PRECISION NOT NULL DEFAULT 0,
    "limits_override" JSONB,
    "source" "AccountSource" NOT NULL DEFAULT 'signup',
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "accounts_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "signup_attempts" (
    "id" TEXT NOT NULL,
    "account_id" TEXT,
    "decision" "SignupDecision" NOT NULL,
    "reasons" TEXT[],
    "email_canonical_hash" TEXT,
    "email_domain" TEXT,
    "email_pattern" TEXT,
    "phone" TEXT,
    "ip" TEXT NOT NULL,
    "subnet" TEXT,
    "asn" INTEGER,
    "fingerprint" TEXT,
    "user_agent" TEXT,
    "signals" JSONB NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "signup_attempts_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "verifications" (
    "id" TEXT NOT NULL,
    "account_id" TEXT NOT NULL,
    "kind" "VerificationKind" NOT NULL,
    "target" TEXT NOT NULL,
    "secret_hash" TEXT NOT NULL,
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "expires_at" TIMESTAMPTZ(3) NOT NULL,
    "consumed_at" TIMESTAMPTZ(3),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "verifications_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "api_keys" (
    "id" TEXT NOT NULL,
    "account_id" TEXT NOT NULL,
    "name" TEXT,
    "hash" TEXT NOT NULL,
    "prefix" TEXT NOT NULL,
    "status" "KeyStatus" NOT NULL DEFAULT 'active',
    "expires_at" TIMESTAMPTZ(3),
    "revoked_at" TIMESTAMPTZ(3),
    "last_used_at" TIMESTAMPTZ(3),
    "rotated_to" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "api_keys_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "service_tokens" (
    "id" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "hash" TEXT NOT NULL,
    "prefix" TEXT NOT NULL,
    "scopes" TEXT[],
    "last_used_at" TIMESTAMPTZ(3),
    "revoked_at" TIMESTAMPTZ(3),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "service_tokens_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "signals" (
    "kind" TEXT NOT NULL,
    "value" TEXT NOT NULL,
    "account_id" TEXT NOT NULL,
    "at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "signals_pkey" PRIMARY KEY ("kind","value","account_id")
);

-- CreateTable
CREATE TABLE "links" (
    "account_a" TEXT NOT NULL,
    "account_b" TEXT NOT NULL,
    "weight" DOUBLE PRECISION NOT NULL,
    "evidence" JSONB NOT NULL,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "links_pkey" PRIMARY KEY ("account_a","account_b")
);

-- CreateTable
CREATE TABLE "clusters" (
    "id" TEXT NOT NULL,
    "score" DOUBLE PRECISION NOT NULL DEFAULT 0,
    "action" "ClusterAction" NOT NULL DEFAULT 'none',
    "size" INTEGER NOT NULL DEFAULT 0,
    "label" TEXT,
    "evidence" JSONB NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "clusters_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "cluster_members" (
    "account_id" TEXT NOT NULL,
    "cluster_id" TEXT NOT NULL,
    "joined_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "cluster_members_pkey" PRIMARY KEY ("account_id")
);

-- CreateTable
CREATE TABLE "rules" (
    "id" TEXT NOT NULL,
    "kind" "RuleKind" NOT NULL,
    "value" TEXT NOT NULL,
    "mode" "RuleMode" NOT NULL,
    "note" TEXT,
    "expires_at" TIMESTAMPTZ(3),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "rules_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "audit_events" (
    "id" TEXT NOT NULL,
    "at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "actor" TEXT NOT NULL,
    "action" TEXT NOT NULL,
    "subject_type" TEXT NOT NULL,
    "subject_id" TEXT NOT NULL,
    "data" JSONB NOT NULL,

    CONSTRAINT "audit_events_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "accounts_external_id_key" ON "accounts"("external_id");

-- CreateIndex
CREATE UNIQUE INDEX "accounts_email_canonical_hash_key" ON "accounts"("email_canonical_hash");

-- CreateIndex
CREATE INDEX "accounts_phone_idx" ON "accounts"("phone");

-- CreateIndex
CREATE INDEX "accounts_status_idx" ON "accounts"("status");

-- CreateIndex
CREATE INDEX "accounts_created_at_idx" ON "accounts"("created_at");

-- CreateIndex
CREATE INDEX "signup_attempts_created_at_idx" ON "signup_attempts"("created_at");

-- CreateIndex
CREATE INDEX "signup_attempts_ip_idx" ON "signup_attempts"("ip");

-- CreateIndex
CREATE INDEX "signup_attempts_account_id_idx" ON "signup_attempts"("account_id");

-- CreateIndex
CREATE INDEX "verifications_account_id_kind_created_at_idx" ON "verifications"("account_id", "kind", "created_at");

-- CreateIndex
CREATE INDEX "verifications_target_kind_created_at_idx" ON "verifications"("target", "kind", "created_at");

-- CreateIndex
CREATE UNIQUE INDEX "api_keys_hash_key" ON "api_keys"("hash");

-- CreateIndex
CREATE INDEX "api_keys_account_id_idx" ON "api_keys"("account_id");

-- CreateIndex
CREATE UNIQUE INDEX "service_tokens_hash_key" ON "service_tokens"("hash");

-- CreateIndex
CREATE INDEX "signals_account_id_idx" ON "signals"("account_id");

-- CreateIndex
CREATE INDEX "links_account_b_idx" ON "links"("account_b");

-- CreateIndex
CREATE INDEX "clusters_action_score_idx" ON "clusters"("action", "score");

-- CreateIndex
CREATE INDEX "cluster_members_cluster_id_idx" ON "cluster_members"("cluster_id");

-- CreateIndex
CREATE UNIQUE INDEX "rules_kind_value_key" ON "rules"("kind", "value");

-- CreateIndex
CREATE INDEX "audit_events_subject_type_subject_id_at_idx" ON "audit_events"("subject_type", "subject_id", "at");

-- CreateIndex
CREATE INDEX "audit_events_at_idx" ON "audit_events"("at");

-- AddForeignKey
ALTER TABLE "signup_attempts" ADD CONSTRAINT "signup_attempts_account_id_fkey" FOREIGN KEY ("account_id") REFERENCES "accounts"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "verifications" ADD CONSTRAINT "verifications_account_id_fkey" FOREIGN KEY ("account_id") REFERENCES "accounts"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "api_keys" ADD CONSTRAINT "api_keys_account_id_fkey" FOREIGN KEY ("account_id") REFERENCES "accounts"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "signals" ADD CONSTRAINT "signals_account_id_fkey" FOREIGN KEY ("account_id") REFERENCES "accounts"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "cluster_members" ADD CONSTRAINT "cluster_members_account_id_fkey" FOREIGN KEY ("account_id") REFERENCES "accounts"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "cluster_members" ADD CONSTRAINT "cluster_members_cluster_id_fkey" FOREIGN KEY ("cluster_id") REFERENCES "clusters"("id") ON DELETE CASCADE ON UPDATE CASCADE;
