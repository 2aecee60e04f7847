-- The package version, for the pure Lua modules (the C core has it as CTC_VERSION; spec/config_spec.lua checks
-- they agree).
return "0.2.0"
