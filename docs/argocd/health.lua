-- Argo CD health check for finetune.dev/v1alpha1 FineTuneJob.
-- Paste into argocd-cm as resource.customizations.health.finetune.dev_FineTuneJob (docs/gitops.md).
--   Succeeded                                   -> Healthy
--   Pending / Running, no status yet, or status
--   older than the spec (observedGeneration)    -> Progressing
--   Suspended                                   -> Suspended
--   Failed, or condition Stalled=True           -> Degraded (with the reason and message)
local hs = {}

local function condition(status, ctype)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function describe(status, fallback)
  local text = status.message
  if text == nil or text == "" then
    text = fallback
  end
  if status.reason ~= nil and status.reason ~= "" then
    text = status.reason .. ": " .. text
  end
  return text
end

local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to pick up the FineTuneJob"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local phase = status.phase
if phase == "Failed" then
  hs.status = "Degraded"
  hs.message = describe(status, "The fine-tuning run failed")
  return hs
end

local stalled = condition(status, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  local text = stalled.message
  if text == nil or text == "" then
    text = "The fine-tuning run cannot progress"
  end
  if stalled.reason ~= nil and stalled.reason ~= "" then
    text = stalled.reason .. ": " .. text
  end
  hs.message = text
  return hs
end

if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = describe(status, "The adapter is ready")
  return hs
end

if phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = describe(status, "The run is suspended (spec.suspend)")
  return hs
end

if phase == "Pending" or phase == "Running" then
  hs.status = "Progressing"
  local text = describe(status, phase)
  if phase == "Running" and status.progress ~= nil and status.progress.percent ~= nil then
    text = string.format("%s (%.0f%% of training steps done)", text, status.progress.percent)
  end
  hs.message = text
  return hs
end

hs.status = "Progressing"
hs.message = "Unknown phase " .. tostring(phase)
return hs
