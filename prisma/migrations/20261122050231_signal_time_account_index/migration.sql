-- DropIndex
DROP INDEX "signals_kind_value_at_idx";

-- CreateIndex
CREATE INDEX "signals_kind_value_at_account_id_idx" ON "signals"("kind", "value", "at", "account_id");
