-- CreateTable
CREATE TABLE "usage_hours" (
    "account_id" TEXT NOT NULL,
    "hour" TIMESTAMPTZ(3) NOT NULL,
    "requests" INTEGER NOT NULL DEFAULT 0,
    "cost" BIGINT NOT NULL DEFAULT 0,
    "denied" INTEGER NOT NULL DEFAULT 0,
    "ips" TEXT[],
    "fingerprints" TEXT[],
    "asns" INTEGER[],

    CONSTRAINT "usage_hours_pkey" PRIMARY KEY ("account_id","hour")
);

-- CreateTable
CREATE TABLE "usage_events" (
    "id" TEXT NOT NULL,
    "account_id" TEXT NOT NULL,
    "key_id" TEXT,
    "at" TIMESTAMPTZ(3) NOT NULL,
    "ip" TEXT,
    "asn" INTEGER,
    "fingerprint" TEXT,
    "tls_fingerprint" TEXT,
    "user_agent" TEXT,
    "endpoint" TEXT,
    "cost" INTEGER NOT NULL DEFAULT 1,
    "decision" TEXT NOT NULL,
    "reason" TEXT,
    "query_minhash" INTEGER[],
    "source" TEXT NOT NULL DEFAULT 'live',

    CONSTRAINT "usage_events_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "usage_hours_hour_idx" ON "usage_hours"("hour");

-- CreateIndex
CREATE INDEX "usage_events_account_id_at_idx" ON "usage_events"("account_id", "at");

-- CreateIndex
CREATE INDEX "usage_events_at_idx" ON "usage_events"("at");

-- AddForeignKey
ALTER TABLE "usage_hours" ADD CONSTRAINT "usage_hours_account_id_fkey" FOREIGN KEY ("account_id") REFERENCES "accounts"("id") ON DELETE CASCADE ON UPDATE CASCADE;
