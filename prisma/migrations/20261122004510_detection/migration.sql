-- CreateEnum
CREATE TYPE "AnalysisStatus" AS ENUM ('queued', 'running', 'completed', 'failed');

-- AlterTable
ALTER TABLE "clusters" ADD COLUMN     "acted_at" TIMESTAMPTZ(3),
ADD COLUMN     "live" BOOLEAN NOT NULL DEFAULT true,
ADD COLUMN     "scored_at" TIMESTAMPTZ(3);

-- CreateTable
CREATE TABLE "analysis_runs" (
    "id" TEXT NOT NULL,
    "status" "AnalysisStatus" NOT NULL DEFAULT 'queued',
    "requested_by" TEXT NOT NULL,
    "as_of" TIMESTAMPTZ(3),
    "summary" JSONB,
    "error" TEXT,
    "started_at" TIMESTAMPTZ(3),
    "finished_at" TIMESTAMPTZ(3),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "analysis_runs_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "account_features" (
    "account_id" TEXT NOT NULL,
    "as_of" TIMESTAMPTZ(3) NOT NULL,
    "features" JSONB NOT NULL,
    "risk" DOUBLE PRECISION NOT NULL DEFAULT 0,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "account_features_pkey" PRIMARY KEY ("account_id")
);

-- CreateTable
CREATE TABLE "link_suppressions" (
    "account_id" TEXT NOT NULL,
    "kind" TEXT NOT NULL,
    "cluster_id" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "link_suppressions_pkey" PRIMARY KEY ("account_id","kind")
);

-- CreateIndex
CREATE INDEX "analysis_runs_created_at_idx" ON "analysis_runs"("created_at");

-- CreateIndex
CREATE INDEX "clusters_live_score_idx" ON "clusters"("live", "score");
