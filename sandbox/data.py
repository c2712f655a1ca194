"""Pluggy's payloads: the one factory for the sandbox and the tests, plus the sandbox's world data.

The builders (``item``, ``account``, ``transaction``, ``webhook``, ``error_body``...) give realistic
payloads of sandbox connector 0 "Pluggy Bank" in BRL and take keyword overrides named like Pluggy's
JSON fields; tests/test_pluggy_fixtures.py checks them against Pluggy's OpenAPI document. The
sandbox's generated world (connectors, credential outcomes, accounts, transactions) is built on
them: everything random there comes from a ``random.Random`` handed in by the caller, so the same
seed and the same sequence of calls give the same ids and rows.
"""

from __future__ import annotations

import base64
import json
import random
import secrets
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

Json = dict[str, Any]

MFA_VALUE = "123456"
GOOD_USER = "user-ok"
GOOD_PASSWORD = "password-ok"
PERF_USER_PREFIX = "user-ok-perf-"
HISTORY_DAYS = 365
HISTORY_PER_ACCOUNT = 60
PENDING_DAYS_AGO = (0, 1, 3)
NEW_PER_SYNC = (1, 3)
# What the sandbox's connectors collect.
PRODUCTS = [
    "ACCOUNTS",
    "CREDIT_CARDS",
    "TRANSACTIONS",
    "PAYMENT_DATA",
    "INVESTMENTS",
    "INVESTMENTS_TRANSACTIONS",
    "IDENTITY",
    "LOANS",
]
# Every product an item may name (the enum of Item.products in Pluggy's OpenAPI document).
PRODUCT_TYPES = (*PRODUCTS, "BROKERAGE_NOTE", "MOVE_SECURITY")
OWNER = "John Doe"
OWNER_CPF = "416.799.495-00"
CREATED_AT = "2024-05-02T13:05:11.402Z"
SYNCED_AT = "2024-05-10T09:15:42.118Z"
NEXT_SYNC_AT = "2024-05-11T09:15:42.118Z"


def iso(moment: datetime) -> str:
    """Pluggy's timestamp form: UTC, milliseconds, ``Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def day_timestamp(day: date) -> str:
    return f"{day.isoformat()}T00:00:00.000Z"


def new_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def new_id() -> str:
    """A fresh random id, for payloads built outside the seeded world."""
    return str(uuid.uuid4())


# Connectors ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Connector:
    id: int
    name: str
    mfa_steps: tuple[str, ...] = ()
    open_finance: bool = False  # logs in by OAuth at the institution, under a consent
    products: tuple[str, ...] = tuple(PRODUCTS)


# Pluggy numbers its Open Finance connectors from 600 (docs, "Creating an Item"; 601 is Itaú).
OPEN_FINANCE_CONNECTOR = 600
CONNECTORS = {
    0: Connector(0, "Pluggy Bank"),
    2: Connector(2, "Pluggy Bank Personal"),
    4: Connector(4, "Pluggy Bank MFA", ("token",)),
    5: Connector(5, "Pluggy Bank MFA 2-step", ("token", "token2")),
    OPEN_FINANCE_CONNECTOR: Connector(
        OPEN_FINANCE_CONNECTOR,
        "Pluggy Bank Open Finance",
        open_finance=True,
        products=("ACCOUNTS", "CREDIT_CARDS", "TRANSACTIONS", "IDENTITY", "INVESTMENTS", "LOANS"),
    ),
}
MFA_LABELS = {"token": "Token", "token2": "Second token"}
CPF_CREDENTIAL = {
    "name": "cpf",
    "label": "CPF",
    "type": "number",
    "placeholder": "",
    "validation": "^\\d{3}\\.?\\d{3}\\.?\\d{3}-?\\d{2}$",
    "validationMessage": "CPF deve ter 11 números.",
    "optional": False,
}


def connector_json(connector: Connector, health: str = "ONLINE") -> Json:
    credentials = [
        {"name": "user", "label": "User", "type": "text", "placeholder": GOOD_USER, "optional": False},
        {"name": "password", "label": "Password", "type": "password", "placeholder": GOOD_PASSWORD, "optional": False},
    ]
    return {
        "id": connector.id,
        "name": connector.name,
        "institutionUrl": "https://pluggy.ai",
        "imageUrl": "https://cdn.pluggy.ai/assets/connector-icons/sandbox.svg",
        "primaryColor": "ef294b",
        "type": "PERSONAL_BANK",
        "country": "BR",
        "credentials": [dict(CPF_CREDENTIAL)] if connector.open_finance else credentials,
        "hasMFA": bool(connector.mfa_steps),
        "oauth": connector.open_finance,
        "health": {"status": health, "stage": None},
        "isSandbox": True,
        "isOpenFinance": connector.open_finance,
        "supportsPaymentInitiation": False,
        # Required in the Node SDK's Connector type.
        "supportsScheduledPayments": False,
        "supportsSmartTransfers": False,
        "supportsAutomaticPix": False,
        "supportsBoletoManagement": False,
        "products": list(connector.products),
        "createdAt": "2020-09-07T23:55:10.355Z",
        "updatedAt": "2024-04-22T18:21:03.909Z",
    }


def connector(**overrides: Any) -> Json:
    """Connector 0 "Pluggy Bank", as an item embeds it."""
    return {**connector_json(CONNECTORS[0]), **overrides}


def mfa_parameter(name: str = "token", expires_at: datetime | None = None, **overrides: Any) -> Json:
    """The prompt of an item WAITING_USER_INPUT (``item(parameter=mfa_parameter(), ...)``)."""
    return {
        "name": name,
        "label": MFA_LABELS.get(name, name),
        "type": "number",
        "placeholder": MFA_VALUE,
        "assistiveText": "Digite o token de 6 dígitos enviado por SMS",
        "validation": "^\\d{6}$",
        "validationMessage": "O token deve ter 6 dígitos",
        "mfa": True,
        "expiresAt": iso(expires_at) if expires_at else "2024-05-10T09:20:42.118Z",
        "optional": False,
        **overrides,
    }


def oauth_parameter(url: str, expires_at: datetime) -> Json:
    """The prompt of an Open Finance item waiting for its user to authorize at the institution.
    The URL to open is the prompt's ``data`` (the one string field ConnectorCredential has for
    what the user must be shown: a QR image for QR logins, the OAuth URL here)."""
    return {
        "name": "oauthCode",
        "label": "Autorize o acesso na instituição",
        "type": "text",
        "data": url,
        "instructions": "Abra o link, entre na instituição e autorize o compartilhamento dos dados",
        "mfa": True,
        "expiresAt": iso(expires_at),
        "optional": False,
    }


def user_action(expires_at: datetime) -> Json:
    """What an item WAITING_USER_ACTION asks: approve the access in the bank's app."""
    return {
        "type": "authorize-access",
        "instructions": "Abra o app do banco e aprove o acesso da Pluggy",
        "attributes": {},
        "expiresAt": iso(expires_at),
    }


# Items ----------------------------------------------------------------------------------------


def item(**overrides: Any) -> Json:
    """An item that finished syncing (UPDATED / SUCCESS)."""
    return {
        "id": new_id(),
        "connector": connector(),
        "status": "UPDATED",
        "executionStatus": "SUCCESS",
        "error": None,
        "statusDetail": None,
        "parameter": None,
        "userAction": None,
        "clientUserId": None,
        "webhookUrl": None,
        "products": PRODUCTS,
        "createdAt": CREATED_AT,
        "updatedAt": SYNCED_AT,
        "lastUpdatedAt": SYNCED_AT,
        "nextAutoSyncAt": NEXT_SYNC_AT,
        "consecutiveFailedLoginAttempts": 0,
        "consentExpiresAt": None,
        **overrides,
    }


# Credential outcomes ------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """How an execution ends for a set of credentials."""

    status: str
    execution_status: str
    error_code: str | None = None
    perf: int = 1
    asks_for_approval: bool = False  # the bank makes the user approve the access in its app first

    @property
    def login_ok(self) -> bool:
        return self.status != "LOGIN_ERROR"

    @property
    def succeeds(self) -> bool:
        return self.status == "UPDATED"


SUCCESS = Outcome("UPDATED", "SUCCESS")
INVALID_CREDENTIALS = Outcome("LOGIN_ERROR", "INVALID_CREDENTIALS", "INVALID_CREDENTIALS")
# USER_AUTHORIZATION_PENDING and _NOT_GRANTED are execution error codes (execution.d.ts), not item
# statuses: they end a login, so the item is LOGIN_ERROR (docs, "Item lifecycle": an error in the
# login step is LOGIN_ERROR, one after it OUTDATED).
AUTHORIZATION_PENDING = Outcome("LOGIN_ERROR", "USER_AUTHORIZATION_PENDING", "USER_AUTHORIZATION_PENDING")
AUTHORIZATION_NOT_GRANTED = Outcome("LOGIN_ERROR", "USER_AUTHORIZATION_NOT_GRANTED", "USER_AUTHORIZATION_NOT_GRANTED")
INPUT_TIMEOUT = Outcome("OUTDATED", "USER_INPUT_TIMEOUT", "USER_INPUT_TIMEOUT")
WRONG_MFA = Outcome("LOGIN_ERROR", "INVALID_CREDENTIALS_MFA", "INVALID_CREDENTIALS_MFA")
SPECIAL_USERS = {
    GOOD_USER: SUCCESS,
    "user-locked": Outcome("LOGIN_ERROR", "ACCOUNT_LOCKED", "ACCOUNT_LOCKED"),
    "user-error": Outcome("OUTDATED", "UNEXPECTED_ERROR", "UNEXPECTED_ERROR"),
    "user-unavailable": Outcome("OUTDATED", "SITE_NOT_AVAILABLE", "SITE_NOT_AVAILABLE"),
    "user-connection-error": Outcome("OUTDATED", "CONNECTION_ERROR", "CONNECTION_ERROR"),
    "user-ok-account-error": Outcome("UPDATED", "PARTIAL_SUCCESS"),
    # Stand-in users beyond Pluggy's sandbox (not documented by Pluggy):
    # WAITING_USER_ACTION until POST /sandbox/items/<id>/authorize, or USER_AUTHORIZATION_PENDING
    # once the prompt expires.
    "user-ok-app-approval": Outcome("UPDATED", "SUCCESS", asks_for_approval=True),
    "user-authorization-pending": AUTHORIZATION_PENDING,
}
ERROR_MESSAGES = {
    "INVALID_CREDENTIALS": "Credenciais inválidas",
    "ACCOUNT_LOCKED": "A conta está bloqueada na instituição",
    "UNEXPECTED_ERROR": "Ocorreu um erro inesperado ao sincronizar",
    "SITE_NOT_AVAILABLE": "O site da instituição não está disponível",
    "CONNECTION_ERROR": "Erro de conexão com a instituição",
    "INVALID_CREDENTIALS_MFA": "O token informado é inválido",
    "USER_INPUT_TIMEOUT": "O token não foi informado a tempo",
    "USER_AUTHORIZATION_PENDING": "O acesso não foi aprovado no app da instituição",
    "USER_AUTHORIZATION_NOT_GRANTED": "O acesso foi negado na instituição",
}
CPF_DIGITS = 11


def outcome_for(parameters: Json, connector: Connector | None = None) -> Outcome:
    if connector is not None and connector.open_finance:
        # The user logs in at the institution (OAuth): any well-formed CPF gets that far.
        cpf = "".join(ch for ch in str(parameters.get("cpf", "")) if ch.isdigit())
        return SUCCESS if len(cpf) == CPF_DIGITS else INVALID_CREDENTIALS
    user, password = parameters.get("user"), parameters.get("password")
    if password != GOOD_PASSWORD or not isinstance(user, str):
        return INVALID_CREDENTIALS
    if user in SPECIAL_USERS:
        return SPECIAL_USERS[user]
    multiplier = user.removeprefix(PERF_USER_PREFIX)
    if user.startswith(PERF_USER_PREFIX) and multiplier.isdigit() and int(multiplier) > 0:
        return Outcome("UPDATED", "SUCCESS", perf=int(multiplier))
    return INVALID_CREDENTIALS


def item_error(code: str = "INVALID_CREDENTIALS", **overrides: Any) -> Json:
    """The ``error`` of a failed item, e.g. ``item(status="LOGIN_ERROR", error=item_error())``."""
    return {"code": code, "message": ERROR_MESSAGES.get(code, code), "providerMessage": None, **overrides}


def partial_status_detail(now: datetime) -> Json:
    updated = {"isUpdated": True, "lastUpdatedAt": iso(now)}
    failed = {
        "isUpdated": False,
        "lastUpdatedAt": None,
        "warnings": [{"code": "001", "message": "Credit cards could not be collected"}],
    }
    return {"accounts": updated, "creditCards": failed, "transactions": updated}


CONSENT_LIFETIME = timedelta(days=365)  # Open Finance Brasil consents last at most 12 months
PERMISSIONS = {
    "ACCOUNTS": ["ACCOUNTS_ALL"],
    "TRANSACTIONS": ["ACCOUNTS_TRANSACTIONS"],
    "CREDIT_CARDS": ["CREDIT_CARDS_ALL"],
    "IDENTITY": ["REGISTRATION_ALL"],
    "INVESTMENTS": ["INVESTMENTS_ALL"],
    "LOANS": ["CREDIT_OPERATIONS_ALL"],
}


def consent(rng: random.Random, item_id: str, products: list[str], now: datetime) -> Json:
    """The Open Finance consent a user gives when authorizing an item (GET /consents)."""
    granted = [permission for product in products for permission in PERMISSIONS.get(product, [])]
    return {
        "id": new_uuid(rng),
        "itemId": item_id,
        "products": list(products),
        "openFinancePermissionsGranted": granted,
        "createdAt": iso(now),
        "expiresAt": iso(now + CONSENT_LIFETIME),
        "revokedAt": None,
    }


# Accounts -----------------------------------------------------------------------------------


def account(**overrides: Any) -> Json:
    """A BRL checking account."""
    number = overrides.pop("number", "0001/12345-0")
    return {
        "id": new_id(),
        "itemId": new_id(),
        "type": "BANK",
        "subtype": "CHECKING_ACCOUNT",
        "number": number,
        "name": "Conta Corrente",
        "marketingName": "GOLD Conta Corrente",
        "balance": 3210.55,
        "currencyCode": "BRL",
        "owner": OWNER,
        "taxNumber": OWNER_CPF,
        "bankData": {
            "transferNumber": number,
            "closingBalance": overrides.get("balance", 3210.55),
            "automaticallyInvestedBalance": 0,
            "overdraftContractedLimit": 1000,
            "overdraftUsedLimit": 0,
            "unarrangedOverdraftAmount": 0,
            "hasReservedBalance": False,
            "reservedBalances": None,
        },
        "creditData": None,
        "createdAt": CREATED_AT,
        "updatedAt": SYNCED_AT,
        **overrides,
    }


def credit_card_account(**overrides: Any) -> Json:
    """A Mastercard Black credit card account."""
    credit = {
        "level": "BLACK",
        "brand": "MASTERCARD",
        "balanceCloseDate": "2024-05-25T00:00:00.000Z",
        "balanceDueDate": "2024-06-03T00:00:00.000Z",
        "availableCreditLimit": 8104.7,
        "balanceForeignCurrency": None,
        "creditLimit": 10000,
        "minimumPayment": 284.3,
        "isLimitFlexible": False,
        "status": "ACTIVE",
        "holderType": "MAIN",
    }
    defaults = {
        "type": "CREDIT",
        "subtype": "CREDIT_CARD",
        "number": "xxxx8670",
        "name": "Mastercard Black",
        "marketingName": "PLUGGY UNICLASS MASTERCARD BLACK",
        "balance": 1895.3,
        "bankData": None,
        "creditData": credit,
    }
    return account(**{**defaults, **overrides})


def new_bank_account(rng: random.Random, item_id: str, now: datetime) -> Json:
    number = f"0001/{rng.randint(10000, 99999)}-{rng.randint(0, 9)}"
    return account(id=new_uuid(rng), itemId=item_id, number=number, balance=0.0, createdAt=iso(now), updatedAt=iso(now))


def new_credit_card_account(rng: random.Random, item_id: str, now: datetime) -> Json:
    close_day = (now + timedelta(days=rng.randint(3, 20))).date()
    card = credit_card_account(
        id=new_uuid(rng),
        itemId=item_id,
        number=f"xxxx{rng.randint(1000, 9999)}",
        balance=0.0,
        createdAt=iso(now),
        updatedAt=iso(now),
    )
    card["creditData"].update(
        balanceCloseDate=day_timestamp(close_day),
        balanceDueDate=day_timestamp(close_day + timedelta(days=9)),
        availableCreditLimit=10000.0,
        minimumPayment=0.0,
    )
    return card


def refresh_balance(account: Json, transactions: list[Json], now: datetime) -> None:
    """Balances follow the rows: bank = opening + sum; card = what is owed (sum of debits)."""
    account["balance"] = balance_after(account, sum(t["amount"] for t in transactions))
    if account["type"] == "BANK":
        account["bankData"]["closingBalance"] = account["balance"]
    else:
        credit = account["creditData"]
        credit["availableCreditLimit"] = round(credit["creditLimit"] - account["balance"], 2)
        credit["minimumPayment"] = round(account["balance"] * 0.15, 2)
    account["updatedAt"] = iso(now)


def balance_after(account: Json, total: float) -> float:
    """The account's balance once rows summing to ``total`` have moved it: a bank account's money,
    a card's debt."""
    if account["type"] == "BANK":
        return round(OPENING_BALANCE + total, 2)
    return round(max(0.0, -total), 2)


OPENING_BALANCE = 2500.0


# Transactions -------------------------------------------------------------------------------

PEOPLE = ["Maria Silva", "João Souza", "Ana Oliveira", "Carlos Pereira", "Fernanda Lima", "Rafael Costa"]
# Categories and their ids as in Pluggy's category tree (sandbox.products.CATEGORIES).
BILLERS = [
    ("Enel Distribuição", "Electricity", "17020002"),
    ("Sabesp", "Water", "17020001"),
    ("Vivo Fibra", "Internet", "07010001"),
    ("Condomínio Ed. Aurora", "Housing", "17000000"),
    ("Porto Seguro", "Vehicle insurance", "20040000"),
]
MERCHANTS = [
    ("iFood", "IFOOD *RESTAURANTE SABOR", "Food delivery", "11020000", 5812),
    ("Uber", "UBER *TRIP HELP.UBER.COM", "Taxi and ride-hailing", "19010000", 4121),
    ("Netflix", "NETFLIX.COM", "Video streaming", "09020000", 4899),
    ("Mercado Livre", "MERCADOLIVRE*VENDEDOR", "Online shopping", "08010000", 5999),
    ("Posto Shell", "POSTO SHELL AV PAULISTA", "Gas stations", "19050001", 5541),
    ("Drogasil", "DROGASIL 1234", "Pharmacy", "18020000", 5912),
    ("Pão de Açúcar", "PAO DE ACUCAR 0123", "Groceries", "10000000", 5411),
    ("Amazon", "AMAZON BR MARKETPLACE", "Online shopping", "08010000", 5942),
]


def _pix_out(rng: random.Random) -> Json:
    name = rng.choice(PEOPLE)
    return {
        "description": f"Pix enviado {name}",
        "descriptionRaw": f"PIX ENVIADO {name.upper()}",
        "amount": -_money(rng, 10, 600),
        "category": "Transfer - PIX",
        "categoryId": "05070000",
        "paymentData": _payment(OWNER, name, "PIX"),
    }


def _pix_in(rng: random.Random) -> Json:
    name = rng.choice(PEOPLE)
    return {
        "description": f"Pix recebido {name}",
        "descriptionRaw": f"PIX RECEBIDO {name.upper()}",
        "amount": _money(rng, 20, 800),
        "category": "Transfer - PIX",
        "categoryId": "05070000",
        "paymentData": _payment(name, OWNER, "PIX"),
    }


def _salary(rng: random.Random) -> Json:
    return {
        "description": "Salário Acme Ltda",
        "descriptionRaw": "CRED SALARIO ACME LTDA",
        "amount": _money(rng, 2500, 4000),
        "category": "Salary",
        "categoryId": "01010000",
        "paymentData": _payment("Acme Ltda", OWNER, "TED"),
    }


def _boleto(rng: random.Random) -> Json:
    biller, category, category_id = rng.choice(BILLERS)
    amount = _money(rng, 100, 1200)
    payment = _payment(OWNER, biller, "BOLETO")
    payment["boletoMetadata"] = _boleto_metadata(rng, amount)
    return {
        "description": f"Pagamento de boleto {biller}",
        "descriptionRaw": f"PAG BOLETO {biller.upper()}",
        "amount": -amount,
        "category": category,
        "categoryId": category_id,
        "paymentData": payment,
    }


def _boleto_metadata(rng: random.Random, amount: float) -> Json:
    """A bank slip's numbers: 44-digit barcode, 47-digit digitable line (FEBRABAN layout)."""
    bank, due_factor, cents = "341", rng.randint(9000, 9999), f"{round(amount * 100):010d}"
    free_field = "".join(str(rng.randint(0, 9)) for _ in range(25))
    barcode = f"{bank}9{rng.randint(0, 9)}{due_factor}{cents}{free_field}"
    line = f"{bank}9{free_field[:5]}{rng.randint(0, 9)}{free_field[5:15]}{rng.randint(0, 9)}"
    line += f"{free_field[15:]}{rng.randint(0, 9)}{barcode[4]}{due_factor}{cents}"
    return {
        "digitableLine": line,
        "barcode": barcode,
        "baseAmount": amount,
        "penaltyAmount": 0,
        "interestAmount": 0,
        "discountAmount": 0,
    }


def _bank_fee(rng: random.Random) -> Json:
    return {
        "description": "Tarifa pacote de serviços",
        "descriptionRaw": "TAR PACOTE SERVICOS",
        "amount": -_money(rng, 25, 55),
        "category": "Account fees",
        "categoryId": "16010000",
        "paymentData": None,
    }


BANK_KINDS = [(_pix_out, 8), (_pix_in, 2), (_boleto, 3), (_bank_fee, 1), (_salary, 1)]


def _card_purchase(rng: random.Random) -> Json:
    name, raw, category, category_id, mcc = rng.choice(MERCHANTS)
    amount = _money(rng, 12, 600)
    installments = rng.choice([1, 1, 1, 1, 3, 6, 10])
    metadata = {
        "installmentNumber": rng.randint(1, installments),
        "totalInstallments": installments,
        "totalAmount": round(amount * installments, 2),
        "payeeMCC": mcc,
        "cardNumber": None,
    }
    description = name
    if installments > 1:
        description = f"{name} {metadata['installmentNumber']}/{installments}"
    return {
        "description": description,
        "descriptionRaw": raw,
        "amount": -amount,
        "category": category,
        "categoryId": category_id,
        "paymentData": None,
        "creditCardMetadata": metadata,
        "merchant": {"name": name, "businessName": f"{name} Ltda", "cnpj": _cnpj(rng), "cnae": None},
    }


def _card_payment(rng: random.Random) -> Json:
    return {
        "description": "Pagamento de fatura",
        "descriptionRaw": "PAGAMENTO RECEBIDO",
        "amount": _money(rng, 300, 2500),
        "category": "Credit card payment",
        "categoryId": "05100000",
        "paymentData": None,
    }


CARD_KINDS = [(_card_purchase, 5), (_card_payment, 1)]


def _money(rng: random.Random, low: float, high: float) -> float:
    return round(rng.uniform(low, high), 2)


def _cnpj(rng: random.Random) -> str:
    digits = f"{rng.randint(10**13, 10**14 - 1)}"
    return f"{digits[:2]}.{digits[2:5]}.{digits[5:8]}/{digits[8:12]}-{digits[12:]}"


def _payment(payer: str, receiver: str, method: str) -> Json:
    return {
        "payer": {"name": payer, "documentNumber": None},
        "receiver": {"name": receiver, "documentNumber": None},
        "paymentMethod": method,
        "referenceNumber": None,
        "reason": None,
        "boletoMetadata": None,
    }


def transaction(**overrides: Any) -> Json:
    """A posted bank transaction; a negative ``amount`` (the default) is a debit."""
    amount = overrides.get("amount", -52.9)
    return {
        "id": new_id(),
        "accountId": new_id(),
        "date": "2024-05-08T00:00:00.000Z",
        "description": "Pix enviado Padaria Pão Quente",
        "descriptionRaw": "PIX ENVIADO PADARIA PAO QUENTE LTDA",
        "currencyCode": "BRL",
        "amount": amount,
        "amountInAccountCurrency": None,
        "balance": 3210.55,
        "type": "DEBIT" if amount < 0 else "CREDIT",
        "status": "POSTED",
        "category": "Transfer - PIX",
        "categoryId": "05070000",
        "providerCode": "123",
        "providerId": "7e0f4c58b9a14a1c",
        "operationType": "PIX",
        "paymentData": {
            "payer": {"name": OWNER, "documentNumber": {"type": "CPF", "value": OWNER_CPF}},
            "receiver": {
                "name": "Padaria Pão Quente Ltda",
                "documentNumber": {"type": "CNPJ", "value": "12.345.678/0001-90"},
            },
            "paymentMethod": "PIX",
            "referenceNumber": None,
            "reason": None,
            "boletoMetadata": None,
        },
        "creditCardMetadata": None,
        "merchant": None,
        "operationTypeAdditionalInfo": None,
        "order": 0,
        "createdAt": "2024-05-08T10:31:27.645Z",
        "updatedAt": "2024-05-08T10:31:27.645Z",
        **overrides,
    }


def new_transaction(rng: random.Random, account: Json, day: date, status: str, now: datetime) -> Json:
    kinds = BANK_KINDS if account["type"] == "BANK" else CARD_KINDS
    make = rng.choices([kind for kind, _ in kinds], weights=[weight for _, weight in kinds])[0]
    fields = make(rng)
    return transaction(
        id=new_uuid(rng),
        accountId=account["id"],
        date=day_timestamp(day),
        description=fields["description"],
        descriptionRaw=fields["descriptionRaw"],
        amount=fields["amount"],
        balance=None,
        status=status,
        category=fields["category"],
        categoryId=fields["categoryId"],
        providerCode=str(rng.randint(100000, 999999)),
        providerId=None,
        operationType=None,
        paymentData=fields.get("paymentData"),
        creditCardMetadata=fields.get("creditCardMetadata"),
        merchant=fields.get("merchant"),
        createdAt=iso(now),
        updatedAt=iso(now),
    )


def history(rng: random.Random, account: Json, count: int, now: datetime) -> list[Json]:
    """About a year of rows; the first few are recent and still PENDING."""
    today = now.date()
    rows = []
    for index in range(count):
        if index < len(PENDING_DAYS_AGO):
            days_ago, status = PENDING_DAYS_AGO[index], "PENDING"
        else:
            days_ago, status = rng.randint(2, HISTORY_DAYS - 1), "POSTED"
        rows.append(new_transaction(rng, account, today - timedelta(days=days_ago), status, now))
    return rows


def fresh_rows(rng: random.Random, account: Json, count: int, now: datetime) -> list[Json]:
    """Rows a later sync finds, dated today; card purchases start PENDING."""
    status = "POSTED" if account["type"] == "BANK" else "PENDING"
    return [new_transaction(rng, account, now.date(), status, now) for _ in range(count)]


def restated(rng: random.Random, row: Json, now: datetime) -> Json:
    """The same movement as the bank now reports it: new id, slightly different description."""
    return {
        **row,
        "id": new_uuid(rng),
        "description": f"{row['description']} *",
        "descriptionRaw": f"{row['descriptionRaw']} REF",
        "createdAt": iso(now),
        "updatedAt": iso(now),
    }


def sort_key(row: Json) -> tuple[str, str]:
    return (row["date"], row["id"])


def number_within_day(rows: list[Json], earlier: list[Json]) -> None:
    """Pluggy's ``order``: each new row's position among its account's rows of the same day."""
    taken = Counter(row["date"] for row in earlier)
    for row in rows:
        row["order"] = taken[row["date"]]
        taken[row["date"]] += 1


def fill_running_balances(account: Json, rows: list[Json], earlier: list[Json]) -> None:
    """Each new row carries the account's balance right after it, in (date, id) order after the
    ``earlier`` rows, PENDING ones too: every Transaction example of Pluggy's OpenAPI document has a
    number there and the Node SDK declares ``balance: number`` (the document's description allows
    null and the Python SDK's model too, so a number suits both)."""
    total = sum(row["amount"] for row in earlier)
    for row in sorted(rows, key=sort_key):
        total += row["amount"]
        row["balance"] = balance_after(account, total)


# Answers -------------------------------------------------------------------------------------


def page(results: list[Json], *, number: int = 1, total_pages: int = 1, total: int | None = None) -> Json:
    """A numbered page, the shape of ``/accounts`` and ``/webhooks`` answers."""
    return {
        "page": number,
        "total": len(results) if total is None else total,
        "totalPages": total_pages,
        "results": results,
    }


def transactions_page(results: list[Json], *, after: str | None = None, account_id: str | None = None) -> Json:
    """A ``/v2/transactions`` answer; ``after`` is the cursor put in ``next`` (None: last page)."""
    if after is None:
        return {"results": results, "next": None}
    account_id = account_id or (results[0]["accountId"] if results else new_id())
    return {"results": results, "next": "?" + urlencode({"accountId": account_id, "after": after})}


def webhook(**overrides: Any) -> Json:
    return {
        "id": new_id(),
        "event": "item/updated",
        "url": "https://sync.example.com/webhooks/pluggy",
        "disabledAt": None,
        "createdAt": CREATED_AT,
        "updatedAt": CREATED_AT,
        **overrides,
    }


def error_body(status: int, code_description: str | None, message: str, data: Json | None = None) -> Json:
    """Pluggy's error answer: ``{"code": <status>, "message", "codeDescription"?, "data"?}``."""
    body: Json = {"code": status, "message": message}
    if code_description is not None:
        body["codeDescription"] = code_description
    if data is not None:
        body["data"] = data
    return body


def api_key(exp: float | None = None, claims: Json | None = None) -> str:
    """A JWT-shaped API key; its signature is random bytes (clients read ``exp`` without verifying)."""
    claims = claims or {"clientId": "5f9f2a74-7f0e-4b6c-9a43-1b1c1f0d9f10", "iat": 1715331342}
    if exp is not None:
        claims = {**claims, "exp": int(exp)}
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    return f"{header}.{_b64url(json.dumps(claims).encode())}.{_b64url(secrets.token_bytes(32))}"


def auth_response(key: str) -> Json:
    return {"apiKey": key}


def connect_token_response(access_token: str) -> Json:
    return {"accessToken": access_token}


def count_response(count: int = 1) -> Json:
    """The answer of DELETE /items/{id} and DELETE /webhooks/{id}."""
    return {"count": count}


def webhook_event(event: str, **fields: Any) -> Json:
    """A webhook delivery as Pluggy sends it (PLUGGY.md "Webhooks"); item events carry itemId."""
    event_id = new_id()
    return {"event": event, "eventId": event_id, "id": event_id, "triggeredBy": "SYNC", **fields}


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
