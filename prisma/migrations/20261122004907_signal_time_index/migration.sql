-- CreateIndex
CREATE INDEX "signals_kind_value_at_idx" ON "signals"("kind", "value", "at");
