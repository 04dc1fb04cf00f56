import pytest

from features.catalog import load_catalog
from features.eligibility import eligibility_report, eligible_skus
from serving.errors import ApiError, permission_denied
from serving.policy_checks import (
    AUTO_MODEL,
    DenyRules,
    PolicyInput,
    ResidencyRules,
    SizeCaps,
    allowed_regions,
    check_body_size,
    check_model_name,
    check_policy,
    no_candidate_error,
)
from serving.settings import PolicySettings
from serving.tenants import DEFAULT_QUOTAS, Tenant


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def tenant(tier="pro", region="eu", residency=False, entitled=("claude-haiku-4-5", "claude-sonnet-4-5")):
    return Tenant(
        tenant_id=f"{tier}-{region}",
        tier=tier,
        home_region=region,
        residency_required=residency,
        surface="api",
        entitled_skus=frozenset(entitled),
        quotas=DEFAULT_QUOTAS[tier],
    )


def request(who=None, model=AUTO_MODEL, messages=3, prompt_tokens=2_000, text="Summarise this report."):
    return PolicyInput(
        tenant=who or tenant(),
        model=model,
        message_count=messages,
        prompt_tokens=prompt_tokens,
        last_user_text=text,
    )


def test_size_caps_use_the_anthropic_statuses():
    caps = SizeCaps(max_body_bytes=1000, max_messages=4, max_prompt_tokens=5_000)
    assert check_body_size(1000, caps) is None
    assert check_body_size(1001, caps).status == 413
    assert check_body_size(1001, caps).error_type == "request_too_large"
    too_many = check_policy(request(messages=5), caps, DenyRules())
    assert (too_many.status, too_many.error_type) == (400, "invalid_request_error")
    too_long = check_policy(request(prompt_tokens=5_001), caps, DenyRules())
    assert too_long.status == 400 and too_long.message == "prompt is too long: 5001 tokens > 5000 maximum"
    assert check_policy(request(messages=4, prompt_tokens=5_000), caps, DenyRules()) is None


def test_deny_rules():
    rules = DenyRules.from_config(
        blocked_tenant_ids=["free-us"],
        blocked_models_by_tier={"free": ["claude-opus-4-5"]},
        deny_patterns={"private-key": r"BEGIN (RSA|OPENSSH) PRIVATE KEY"},
    )
    caps = SizeCaps()
    blocked = check_policy(request(tenant("free", "us")), caps, rules)
    assert (blocked.status, blocked.error_type) == (403, "permission_error")
    model = check_policy(request(tenant("free", "eu"), model="claude-opus-4-5"), caps, rules)
    assert model.status == 403 and "claude-opus-4-5" in model.message
    assert check_policy(request(tenant("pro", "eu"), model="claude-opus-4-5"), caps, rules) is None
    secret = "here: -----BEGIN RSA PRIVATE KEY----- MIIE..."
    denied = check_policy(request(text=secret), caps, rules)
    assert (denied.status, denied.error_type) == (400, "invalid_request_error")
    assert "private-key" in denied.message and "MIIE" not in denied.message
    assert check_policy(request(text="what is an RSA key?"), caps, rules) is None
    with pytest.raises(ValueError, match="'broken'"):
        DenyRules.from_config(deny_patterns={"broken": "(unclosed"})


def test_pre_checks_run_in_order_after_the_deny_rules():
    seen = []

    def flags_weapons(req: PolicyInput) -> ApiError | None:
        seen.append("weapons")
        return (
            permission_denied("blocked by safety classifier") if "nerve agent" in req.last_user_text else None
        )

    def never_blocks(req: PolicyInput) -> ApiError | None:
        seen.append("never")
        return None

    rules = DenyRules.from_config(blocked_tenant_ids=["pro-eu"])
    checks = (flags_weapons, never_blocks)
    assert check_policy(request(tenant("pro", "us"), text="hello"), SizeCaps(), rules, checks) is None
    assert seen == ["weapons", "never"]
    seen.clear()
    error = check_policy(request(tenant("pro", "us"), text="make a nerve agent"), SizeCaps(), rules, checks)
    assert error.status == 403 and seen == ["weapons"]
    seen.clear()
    assert check_policy(request(tenant("pro", "eu")), SizeCaps(), rules, checks).status == 403
    assert seen == []  # the deny rule answered first


def test_residency_filter():
    rules = ResidencyRules(fallback_regions={"eu": ("us",), "apac": ("apac", "us", "eu")})
    assert allowed_regions(tenant(region="eu", residency=True), rules) == ("eu",)
    assert allowed_regions(tenant(region="eu"), rules) == ("eu", "us")
    assert allowed_regions(tenant(region="apac"), rules) == ("apac", "us", "eu")
    assert allowed_regions(tenant(region="us"), rules) == ("us",)
    assert allowed_regions(tenant(region="eu"), ResidencyRules()) == ("eu",)


def test_a_resident_tenant_never_gets_a_sku_outside_its_region(catalog):
    """Opus 4 runs only in the US: an EU-resident tenant pinned to it gets a clear 403, not a US replica."""
    rules = ResidencyRules(fallback_regions={"eu": ("us",)})
    for residency, expect_opus in ((True, False), (False, True)):
        who = tenant(region="eu", residency=residency, entitled=("claude-opus-4",))
        regions = allowed_regions(who, rules)
        kwargs = dict(
            entitled=who.entitled_skus,
            region=who.home_region,
            prompt_tokens=1000,
            max_tokens=1000,
            allowed_regions=regions,
        )
        assert bool(eligible_skus(catalog, **kwargs)) is expect_opus
        if not expect_opus:
            error = no_candidate_error(
                "claude-opus-4", eligibility_report(catalog, **kwargs), regions=regions, prompt_tokens=1000
            )
            assert error.status == 403 and "(eu)" in error.message


def test_no_candidate_errors_say_why(catalog):
    def report(who, prompt_tokens):
        return eligibility_report(
            catalog,
            entitled=who.entitled_skus,
            region=who.home_region,
            prompt_tokens=prompt_tokens,
            max_tokens=1000,
        )

    who = tenant(region="eu")
    not_entitled = no_candidate_error("claude-opus-4-5", report(who, 10), regions=("eu",), prompt_tokens=10)
    assert (not_entitled.status, not_entitled.error_type) == (403, "permission_error")
    too_long = no_candidate_error(AUTO_MODEL, report(who, 300_000), regions=("eu",), prompt_tokens=300_000)
    assert (too_long.status, too_long.error_type) == (400, "invalid_request_error")
    assert "300000 tokens" in too_long.message and "200000" in too_long.message
    pinned_long = no_candidate_error(
        "claude-haiku-4-5", report(who, 300_000), regions=("eu",), prompt_tokens=300_000
    )
    assert pinned_long.status == 400
    apac_only = tenant(region="eu", entitled=("claude-sonnet-3-5",))
    nowhere = no_candidate_error(AUTO_MODEL, report(apac_only, 10), regions=("eu",), prompt_tokens=10)
    assert nowhere.status == 403 and "(eu)" in nowhere.message


def test_unknown_models_are_404(catalog):
    assert check_model_name(AUTO_MODEL, catalog) is None
    assert check_model_name("claude-haiku-4-5", catalog) is None
    error = check_model_name("gpt-5", catalog)
    assert (error.status, error.error_type, error.message) == (404, "not_found_error", "model: gpt-5")


def test_policy_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("SWITCHYARD_POLICY_MAX_MESSAGES", "7")
    monkeypatch.setenv("SWITCHYARD_POLICY_DENY_PATTERNS", '{"no-keys": "PRIVATE KEY"}')
    monkeypatch.setenv("SWITCHYARD_POLICY_FALLBACK_REGIONS", '{"apac": ["us"]}')
    settings = PolicySettings()
    assert settings.size_caps().max_messages == 7
    assert (
        check_policy(request(text="a PRIVATE KEY"), settings.size_caps(), settings.deny_rules()).status == 400
    )
    assert allowed_regions(tenant(region="apac"), settings.residency_rules()) == ("apac", "us")
    monkeypatch.setenv("SWITCHYARD_POLICY_FALLBACK_REGIONS", '{"apac": ["mars"]}')
    with pytest.raises(ValueError, match="'mars'"):
        PolicySettings()
