"""Webhook routes: ``/api/v1/webhooks`` (list, create), ``/{id}`` (read, change, delete) and
``/{id}/deliveries`` (the delivery log). The secret is answered once, on creation."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from edgeproxy.api.errors import Invalid, NotFound
from edgeproxy.api.fields import StrictBooleanField, StrictCharField
from edgeproxy.contracts import events as contract
from processes.events import selectors, webhooks


class WebhookInput(serializers.Serializer):
    url = StrictCharField(max_length=webhooks.URL_MAX + 1, trim_whitespace=False)
    event_types = serializers.ListField(child=StrictCharField(max_length=64), required=False, max_length=50)
    secret = StrictCharField(required=False, max_length=webhooks.SECRET_MAX + 1, trim_whitespace=False)
    description = StrictCharField(required=False, allow_blank=True, max_length=255)
    enabled = StrictBooleanField(required=False)


class WebhookPatch(WebhookInput):
    url = StrictCharField(required=False, max_length=webhooks.URL_MAX + 1, trim_whitespace=False)


class WebhookOutput(serializers.Serializer):
    id = serializers.UUIDField()
    url = serializers.CharField()
    event_types = serializers.ListField(child=serializers.CharField(),
                                        help_text=f"empty = all; known: {', '.join(contract.EVENT_TYPES)}")
    description = serializers.CharField()
    enabled = serializers.BooleanField()
    created = serializers.DateTimeField()
    modified = serializers.DateTimeField()
    deliveries = serializers.DictField(child=serializers.IntegerField(), help_text="deliveries by state")


class WebhookCreated(WebhookOutput):
    secret = serializers.CharField(help_text="signs deliveries; shown this once only")


class DeliveryOutput(serializers.Serializer):
    id = serializers.IntegerField()
    event_id = serializers.IntegerField()
    event_type = serializers.CharField(source="event.type")
    camera = serializers.CharField(source="event.camera")
    state = serializers.CharField(help_text="pending, delivered")
    attempts = serializers.IntegerField()
    last_status_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField()
    next_attempt = serializers.DateTimeField(allow_null=True)
    created = serializers.DateTimeField()
    delivered = serializers.DateTimeField(allow_null=True)


def _valid(serializer_class, data, partial=False) -> dict:
    serializer = serializer_class(data=data, partial=partial)
    if not serializer.is_valid():
        errors = {k: [str(m) for m in v] if isinstance(v, list) else [str(v)] for k, v in serializer.errors.items()}
        field, messages = next(iter(errors.items()))
        raise Invalid(f"{field}: {messages[0]}", errors)
    return dict(serializer.validated_data)


def _out(webhook) -> dict:
    return WebhookOutput({**webhook.__dict__, "deliveries": selectors.delivery_counts(webhook.id)}).data


class WebhookCollection(APIView):
    @extend_schema(summary="Webhooks", responses={200: WebhookOutput(many=True)})
    def get(self, request):
        return Response([_out(w) for w in selectors.webhooks()])

    @extend_schema(summary="Add a webhook (its secret is answered once)", request=WebhookInput,
                   responses={201: WebhookCreated})
    def post(self, request):
        webhook, secret = webhooks.create_webhook(**_valid(WebhookInput, request.data))
        return Response({**_out(webhook), "secret": secret}, status=201)


class WebhookDetail(APIView):
    @extend_schema(summary="One webhook", responses={200: WebhookOutput})
    def get(self, request, webhook_id):
        webhook = selectors.webhook(webhook_id)
        if webhook is None:
            raise NotFound(f"No webhook {webhook_id}.")
        return Response(_out(webhook))

    @extend_schema(summary="Change a webhook", request=WebhookPatch, responses={200: WebhookOutput})
    def patch(self, request, webhook_id):
        return Response(_out(webhooks.update_webhook(webhook_id, **_valid(WebhookPatch, request.data, True))))

    @extend_schema(summary="Delete a webhook (and its deliveries)", responses={204: None})
    def delete(self, request, webhook_id):
        webhooks.delete_webhook(webhook_id)
        return Response(status=204)


class WebhookDeliveries(APIView):
    @extend_schema(summary="The webhook's newest deliveries (limit: at most 1000, default 100)",
                   responses={200: DeliveryOutput(many=True)})
    def get(self, request, webhook_id):
        if selectors.webhook(webhook_id) is None:
            raise NotFound(f"No webhook {webhook_id}.")
        raw = request.query_params.get("limit", "100")
        if not raw.isdigit() or not 1 <= int(raw) <= 1000:
            raise Invalid("limit: must be an integer from 1 to 1000.", field="limit")
        return Response(DeliveryOutput(selectors.deliveries(webhook_id, int(raw)), many=True).data)
