-- AlterTable
ALTER TABLE "analysis_runs" ADD COLUMN     "stage" TEXT,
ADD COLUMN     "stage_at" TIMESTAMPTZ(3);
