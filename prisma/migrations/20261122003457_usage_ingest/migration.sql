-- CreateTable
CREATE TABLE "usage_ingested" (
    "stream" TEXT NOT NULL,
    "ms" BIGINT NOT NULL,
    "seq" BIGINT NOT NULL,

    CONSTRAINT "usage_ingested_pkey" PRIMARY KEY ("stream","ms","seq")
);
