-- Argo CD health check of a weir StreamJob (weir.dev/StreamJob), read off the
-- conditions the controller writes as kstatus has them. Install it under
-- resource.customizations.health.weir.dev_StreamJob in argocd-cm (see
-- charts/weir/README.md).
--   Stalled=True                                   Degraded (the reason and message)
--   spec.state suspended and phase Suspended       Suspended
--   observedGeneration behind, or Reconciling=True Progressing
--   Degraded=True (a savepoint failing, retried)   Degraded
--   phase Finished (a bounded job)                 Healthy
--   Ready=True                                     Healthy
--   otherwise                                      Progressing
local hs = {}
local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the weir controller"
  return hs
end
local conditions = {}
if status.conditions ~= nil then
  for _, condition in ipairs(status.conditions) do
    conditions[condition.type] = condition
  end
end
local function holds(kind)
  return conditions[kind] ~= nil and conditions[kind].status == "True"
end
local function said(kind)
  local condition = conditions[kind]
  if condition.message ~= nil and condition.message ~= "" then
    return condition.reason .. ": " .. condition.message
  end
  return condition.reason
end
if holds("Stalled") then
  hs.status = "Degraded"
  hs.message = said("Stalled")
  return hs
end
if obj.spec ~= nil and obj.spec.state == "suspended" and status.phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = "suspended"
  return hs
end
local generation = obj.metadata.generation
local observed = status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  if holds("Reconciling") then
    hs.message = said("Reconciling")
  else
    hs.message = "the controller has not rolled out generation " .. generation .. " yet"
  end
  return hs
end
if holds("Reconciling") then
  hs.status = "Progressing"
  hs.message = said("Reconciling")
  return hs
end
if holds("Degraded") then
  hs.status = "Degraded"
  hs.message = said("Degraded")
  return hs
end
if status.phase == "Finished" then
  hs.status = "Healthy"
  hs.message = "the bounded job finished"
  return hs
end
if holds("Ready") then
  hs.status = "Healthy"
  hs.message = conditions["Ready"].message
  return hs
end
hs.status = "Progressing"
hs.message = "phase " .. (status.phase or "unknown")
return hs
