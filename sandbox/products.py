"""Pluggy's products beyond accounts and transactions: identity, investments and their movements,
loans, credit-card bills, account statements, the category tree, and connectors as ``/connectors`` answers them.

An item's products are generated when its first execution collects, from the item's own
``random.Random`` (``ItemRecord.data_rng``), so the same seed and calls give the same products.
They live in ``World.products`` (item id -> the JSON below), go with the item when it is deleted,
and only the products the item offers are generated. Later collections close the card bills whose
closing date has passed and put the ``billId`` of each on the card's rows, and list the monthly
statements of every account.

Field lists follow both official SDKs (npm ``pluggy-sdk`` types, PyPI ``pluggy-sdk`` models): a field
the Node types declare as ``T | null`` is always present, a field the Python models require too.
"""

from __future__ import annotations

import calendar
import itertools
import math
import random
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from . import data
from .data import Json, day_timestamp, iso, new_uuid
from .errors import bad_request, not_found
from .state import ItemRecord, World

BRL = "BRL"
INSTITUTION = {"name": "Banco Pluggy S.A.", "number": "60.701.190/0001-04"}
CDI_YEARLY = 0.1065
IPCA_YEARLY = 0.045
BILL_MONTHS = 12


# Where an item's products live -------------------------------------------------------------


def empty_products() -> Json:
    return {
        "identity": None,
        "investments": [],
        "investmentTransactions": {},
        "loans": [],
        "bills": [],
        "statements": {},  # account id -> its statements
    }


def collect(world: World, record: ItemRecord) -> None:
    """An execution collected (under the lock): the first one brings the item's products; every
    one closes the card bills due, so the card's rows carry the ``billId`` of their bill."""
    now = world.now()
    stored = world.products.get(record.id)
    if stored is None:
        stored = world.products[record.id] = new_products(record.data_rng, record.id, _offers(world, record), now)
    for account_id in world.account_ids(record.id):
        stored["statements"][account_id] = monthly_statements(account_id, now.date())
    if not world.offers(record.id, "CREDIT_CARDS"):
        return
    for account_id in world.account_ids(record.id):
        account = world.accounts[account_id]
        if account["type"] == "CREDIT":
            rows = list(world.rows[account_id].values())
            stored["bills"] += close_bills(record.data_rng, account, rows, stored["bills"], now)


def _offers(world: World, record: ItemRecord) -> Callable[[str], bool]:
    return lambda product: world.offers(record.id, product)


def new_products(rng: random.Random, item_id: str, offers: Callable[[str], bool], now: datetime) -> Json:
    products = empty_products()
    if offers("IDENTITY"):
        products["identity"] = new_identity(rng, item_id, now)
    if offers("INVESTMENTS"):
        for investment, movements in new_investments(rng, item_id, now):
            products["investments"].append(investment)
            products["investmentTransactions"][investment["id"]] = movements
    if offers("LOANS"):
        products["loans"] = new_loans(rng, item_id, now)
    return products


def products_of(world: World, item_id: str) -> Json:
    """The item's products (404 for an unknown item); empty before its first collection."""
    world.record_for(item_id)
    return world.products.get(item_id) or empty_products()


def find(world: World, kind: str, resource_id: str) -> tuple[str, Json] | None:
    """(item id, resource) of the investment, loan or bill with that id, wherever it lives."""
    for item_id, products in world.products.items():
        for resource in products[kind]:
            if resource["id"] == resource_id:
                return item_id, resource
    return None


def find_identity(world: World, identity_id: str) -> Json | None:
    for products in world.products.values():
        identity = products["identity"]
        if identity is not None and identity["id"] == identity_id:
            return identity
    return None


# Identity -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Place:
    street: str
    district: str
    city: str
    state: str
    postal_code: str
    ibge_code: str
    area_code: str
    latitude: float
    longitude: float


PLACES = [
    Place("Av. Paulista, 1578", "Bela Vista", "São Paulo", "SP", "01310-200", "3550308", "11", -23.5614, -46.6559),
    Place(
        "Rua Voluntários da Pátria, 190",
        "Botafogo",
        "Rio de Janeiro",
        "RJ",
        "22270-010",
        "3304557",
        "21",
        -22.9519,
        -43.1857,
    ),
    Place("Av. Afonso Pena, 1212", "Centro", "Belo Horizonte", "MG", "30130-003", "3106200", "31", -19.9245, -43.9352),
    Place("Rua XV de Novembro, 700", "Centro", "Curitiba", "PR", "80020-310", "4106902", "41", -25.429, -49.2671),
    Place("Av. Boa Viagem, 3500", "Boa Viagem", "Recife", "PE", "51020-000", "2611606", "81", -8.1177, -34.8951),
    Place(
        "Rua dos Andradas, 1001",
        "Centro Histórico",
        "Porto Alegre",
        "RS",
        "90020-007",
        "4314902",
        "51",
        -30.0306,
        -51.229,
    ),
]
MOTHERS = ["Maria Aparecida Doe", "Ana Lúcia Doe", "Sandra Regina Doe", "Cláudia Maria Doe"]
FATHERS = ["José Carlos Doe", "Antônio Marcos Doe", "Paulo Roberto Doe", "Luiz Fernando Doe"]
JOBS = [("Analista de Sistemas", "212405"), ("Engenheiro Civil", "214205"), ("Contador", "252210")]
EMPLOYER = "Acme Ltda"
EMPLOYER_CNPJ = "12.345.678/0001-90"


def new_identity(rng: random.Random, item_id: str, now: datetime) -> Json:
    """The owner of the item's accounts (``data.OWNER``, ``data.OWNER_CPF``) as Pluggy describes him."""
    place = rng.choice(PLACES)
    job, occupation = rng.choice(JOBS)
    birth = date(rng.randint(1960, 2000), rng.randint(1, 12), rng.randint(1, 28))
    salary = float(rng.randrange(4500, 18000, 50))
    return {
        "id": new_uuid(rng),
        "itemId": item_id,
        "birthDate": day_timestamp(birth),
        "taxNumber": None,
        "document": data.OWNER_CPF,
        "documentType": "CPF",
        "jobTitle": job,
        "companyName": EMPLOYER,
        "fullName": data.OWNER,
        "phoneNumbers": [_phone(rng, place, "Personal"), _phone(rng, place, "Work")],
        "emails": [
            {"type": "Personal", "value": f"john.doe{rng.randint(1, 99)}@gmail.com"},
            {"type": "Work", "value": "john.doe@acme.com.br"},
        ],
        "addresses": [_address(rng, place)],
        "relations": [
            {"type": "Mother", "name": rng.choice(MOTHERS), "document": None},
            {"type": "Father", "name": rng.choice(FATHERS), "document": None},
        ],
        "investorProfile": rng.choice(["Conservative", "Moderate", "Aggressive"]),
        "establishmentName": None,
        "establishmentCode": None,
        "financialRelationships": _relationship(rng, now),
        "qualifications": _qualifications(occupation, salary, now),
        "socialName": None,
        "sex": "MALE",
        "maritalStatus": {"code": rng.choice(["SINGLE", "MARRIED", "STABLE_UNION"])},
        "nationality": {"hasBrazilianNationality": True},
        "otherDocuments": [
            {
                "type": "RG",
                "number": f"{rng.randint(10**7, 10**8 - 1)}",
                "checkDigit": str(rng.randint(0, 9)),
                "additionalInfo": f"SSP/{place.state}",
            },
        ],
        "passport": None,
        "incorporationDate": None,
        "parties": None,
        "businessOtherDocuments": None,
        "companiesCnpj": [INSTITUTION["number"].replace(".", "").replace("/", "").replace("-", "")],
        "createdAt": iso(now),
        "updatedAt": iso(now),
    }


def _phone(rng: random.Random, place: Place, kind: str) -> Json:
    number = f"9{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}"
    return {
        "type": kind,
        "value": f"+55 {place.area_code} {number}",
        "countryCallingCode": None,
        "areaCode": place.area_code,
        "extension": None,
        "additionalInfo": None,
    }


def _address(rng: random.Random, place: Place) -> Json:
    flat = f"Apto {rng.randint(1, 25)}{rng.randint(1, 4):02d}"
    return {
        "fullAddress": f"{place.street}, {flat}, {place.district}, {place.city} - {place.state}, {place.postal_code}",
        "primaryAddress": place.street,
        "city": place.city,
        "postalCode": place.postal_code,
        "state": place.state,
        "country": "Brasil",
        "type": "Personal",
        "additionalInfo": flat,
        "district": place.district,
        "ibgeTownCode": place.ibge_code,
        "countryCode": "BRA",
        "geographicCoordinates": {"latitude": place.latitude, "longitude": place.longitude},
    }


def _relationship(rng: random.Random, now: datetime) -> Json:
    return {
        "startDate": day_timestamp(now.date() - timedelta(days=rng.randint(400, 5000))),
        "productsServicesType": ["CONTA_DEPOSITO_A_VISTA", "CARTAO_CREDITO", "INVESTIMENTOS", "OPERACAO_CREDITO"],
        "procurators": [],
    }


def _qualifications(occupation: str, salary: float, now: datetime) -> Json:
    return {
        "companyCnpj": EMPLOYER_CNPJ,
        "occupationCode": "CBO",
        "occupationDescription": occupation,
        "informedIncome": {"frequency": "MENSAL", "amount": salary, "date": day_timestamp(now.date().replace(day=1))},
        "informedPatrimony": {"amount": round(salary * 40, 2), "year": now.year - 1},
    }


# Investments ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Asset:
    type: str
    subtype: str
    name: str
    code: str | None = None  # ticker, or the fund's CNPJ
    isin: str | None = None
    issuer: str | None = None
    issuer_cnpj: str | None = None
    rate_type: str | None = None  # the indexer: CDI, SELIC, IPCA; None for priced assets
    rate: float | None = None  # % of the indexer (CDI, SELIC) or the fixed part over IPCA
    price: float | None = None  # starting unit price of priced assets
    tax_exempt: bool = False
    years_to_maturity: int | None = None

    @property
    def priced(self) -> bool:
        return self.price is not None

    @property
    def whole_units(self) -> bool:
        return self.type in ("EQUITY", "ETF")


PLUGGY_BANK = ("Banco Pluggy S.A.", "60.701.190/0001-04")
TESOURO = ("Tesouro Nacional", "00.394.460/0001-41")
SHELVES: list[tuple[int, list[Asset]]] = [
    (
        2,
        [
            Asset(
                "FIXED_INCOME",
                "CDB",
                "CDB Banco Pluggy 110% CDI",
                None,
                None,
                *PLUGGY_BANK,
                "CDI",
                110.0,
                years_to_maturity=3,
            ),
            Asset(
                "FIXED_INCOME",
                "LCI",
                "LCI Banco Pluggy 92% CDI",
                None,
                None,
                *PLUGGY_BANK,
                "CDI",
                92.0,
                tax_exempt=True,
                years_to_maturity=2,
            ),
            Asset(
                "FIXED_INCOME",
                "TREASURY",
                "Tesouro Selic 2029",
                None,
                "BRSTNCLF1RU6",
                *TESOURO,
                "SELIC",
                100.0,
                years_to_maturity=5,
            ),
            Asset(
                "FIXED_INCOME",
                "TREASURY",
                "Tesouro IPCA+ 2035",
                None,
                "BRSTNCNTB4U6",
                *TESOURO,
                "IPCA",
                6.12,
                years_to_maturity=11,
            ),
        ],
    ),
    (
        1,
        [
            Asset("MUTUAL_FUND", "MULTIMARKET_FUND", "Pluggy Macro FIC FIM", "34.512.776/0001-05", price=1.8734),
            Asset(
                "MUTUAL_FUND", "FIXED_INCOME_FUND", "Pluggy Renda Fixa Simples FI", "28.104.612/0001-90", price=2.4410
            ),
        ],
    ),
    (
        2,
        [
            Asset("EQUITY", "STOCK", "PETROBRAS PN", "PETR4", "BRPETRACNPR6", price=36.12),
            Asset("EQUITY", "STOCK", "VALE ON", "VALE3", "BRVALEACNOR0", price=62.40),
            Asset("EQUITY", "STOCK", "ITAUUNIBANCO PN", "ITUB4", "BRITUBACNPR1", price=31.85),
            Asset("EQUITY", "STOCK", "WEG ON", "WEGE3", "BRWEGEACNOR0", price=38.90),
        ],
    ),
    (
        1,
        [
            Asset("EQUITY", "REAL_ESTATE_FUND", "CSHG LOGISTICA FII", "HGLG11", "BRHGLGCTF004", price=158.3),
            Asset("ETF", "ETF", "ISHARES BOVA CI", "BOVA11", "BRBOVACTF003", price=118.7),
        ],
    ),
    (1, [Asset("SECURITY", "RETIREMENT", "Pluggy Previdência VGBL Moderado", "41.221.087/0001-20", price=1.3321)]),
]


@dataclass
class Position:
    """What the movements of one investment add up to."""

    units: float = 0.0
    invested: float = 0.0
    price: float = 0.0
    last_month_price: float = 0.0
    year_ago_price: float = 0.0


def new_investments(rng: random.Random, item_id: str, now: datetime) -> list[tuple[Json, list[Json]]]:
    chosen = [asset for count, shelf in SHELVES for asset in rng.sample(shelf, count)]
    return [_investment(rng, asset, item_id, now) for asset in chosen]


def _investment(rng: random.Random, asset: Asset, item_id: str, now: datetime) -> tuple[Json, list[Json]]:
    investment_id = new_uuid(rng)
    purchased = now.date() - timedelta(days=rng.randint(200, 700))
    months = (now.date() - purchased).days // 30
    if asset.priced:
        movements, position = _priced_movements(rng, asset, investment_id, purchased, months)
    else:
        movements, position = _accruing_movements(rng, asset, investment_id, purchased, months)
    amount = round(position.units * position.price, 2)
    profit = round(amount - position.invested, 2)
    taxes = 0.0 if asset.tax_exempt or profit <= 0 else round(profit * 0.15, 2)
    balance = round(amount - taxes, 2)
    due = purchased.replace(year=purchased.year + asset.years_to_maturity) if asset.years_to_maturity else None
    investment = {
        "id": investment_id,
        "code": asset.code,
        "issuerCNPJ": asset.issuer_cnpj,
        "number": f"{rng.randint(10**8, 10**9 - 1)}" if asset.issuer else None,
        "isin": asset.isin,
        "itemId": item_id,
        "type": asset.type,
        "subtype": asset.subtype,
        "name": asset.name,
        "currencyCode": BRL,
        "date": iso(now),
        "value": round(position.price, 6),
        "quantity": round(position.units, 6),
        "taxes": taxes,
        "taxes2": 0.0,
        "balance": balance,
        "amount": amount,
        "amountWithdrawal": balance,
        "amountProfit": profit,
        "amountOriginal": round(position.invested, 2),
        "dueDate": day_timestamp(due) if due else None,
        "issuer": asset.issuer,
        "issueDate": day_timestamp(purchased - timedelta(days=rng.randint(0, 30))) if asset.issuer else None,
        "purchaseDate": day_timestamp(purchased),
        "rate": asset.rate,
        "rateType": asset.rate_type,
        "fixedAnnualRate": asset.rate if asset.rate_type == "IPCA" else None,
        "taxExempt": asset.tax_exempt,
        "lastMonthRate": _growth(position.price, position.last_month_price),
        "annualRate": _growth(position.price, position.year_ago_price),
        "lastTwelveMonthsRate": _growth(position.price, position.year_ago_price),
        "status": "ACTIVE",
        "transactions": None,
        "metadata": _metadata(rng, asset),
        "owner": data.OWNER,
        "institution": dict(INSTITUTION),
        "createdAt": iso(now),
        "updatedAt": iso(now),
    }
    return investment, movements


def _growth(now_price: float, then_price: float) -> float | None:
    return round((now_price / then_price - 1) * 100, 2) if then_price else None


def _metadata(rng: random.Random, asset: Asset) -> Json | None:
    if asset.type != "SECURITY":
        return None
    return {
        "taxRegime": "Regressivo",
        "proposalNumber": f"{rng.randint(10**9, 10**10 - 1)}",
        "processNumber": f"15414.{rng.randint(100000, 999999)}/2019-{rng.randint(10, 99)}",
        "fundName": asset.name,
    }


def _monthly_days(purchased: date, months: int) -> list[date]:
    return [purchased + timedelta(days=30 * month) for month in range(months + 1)]


def _priced_movements(
    rng: random.Random, asset: Asset, investment_id: str, purchased: date, months: int
) -> tuple[list[Json], Position]:
    """Monthly purchases at a drifting price, and now and then a partial sale."""
    position = Position(price=asset.price or 1.0)
    movements = []
    prices = []
    for day in _monthly_days(purchased, months):
        position.price = round(position.price * (1 + rng.uniform(-0.035, 0.045)), 6)
        prices.append(position.price)
        if rng.random() < 0.7 or not movements:
            units = _units(rng, asset, position.price)
            amount = round(units * position.price, 2)
            position.units += units
            position.invested += amount
            movements.append(_movement(rng, investment_id, "BUY", day, units, position.price, amount))
        elif position.units > 2 and rng.random() < 0.3:
            units = _whole(asset, position.units / 3)
            amount = round(units * position.price, 2)
            position.invested -= position.invested * units / position.units
            position.units -= units
            movements.append(_movement(rng, investment_id, "SELL", day, units, position.price, amount))
    position.last_month_price = prices[-2] if len(prices) > 1 else prices[-1]
    position.year_ago_price = prices[-13] if len(prices) > 12 else prices[0]
    return movements, position


def _units(rng: random.Random, asset: Asset, price: float) -> float:
    if asset.whole_units:
        return float(rng.randint(5, 60))
    return round(rng.uniform(300, 3000) / price, 6)


def _whole(asset: Asset, units: float) -> float:
    return float(math.floor(units)) if asset.whole_units else round(units, 6)


def _accruing_movements(
    rng: random.Random, asset: Asset, investment_id: str, purchased: date, months: int
) -> tuple[list[Json], Position]:
    """Fixed income: one unit worth what was applied, growing with its indexer every month."""
    monthly = _monthly_rate(asset)
    position = Position(units=1.0)
    values = []
    movements = []
    for index, day in enumerate(_monthly_days(purchased, months)):
        position.price = round(position.price * (1 + monthly), 2)
        if index == 0 or rng.random() < 0.25:
            amount = float(rng.randrange(1000, 10000, 100))
            position.price += amount
            position.invested += amount
            movement = _movement(rng, investment_id, "BUY", day, None, None, amount)
            movement["agreedRate"] = asset.rate
            movements.append(movement)
        values.append(position.price)
    position.last_month_price = values[-2] if len(values) > 1 else values[-1]
    position.year_ago_price = values[-13] if len(values) > 12 else values[0]
    return movements, position


def _monthly_rate(asset: Asset) -> float:
    rate = asset.rate or 100.0
    # IPCA+ pays inflation plus a fixed rate; the others a share of their indexer (CDI, Selic).
    yearly = (1 + IPCA_YEARLY) * (1 + rate / 100) - 1 if asset.rate_type == "IPCA" else CDI_YEARLY * rate / 100
    return (1 + yearly) ** (1 / 12) - 1


MOVEMENT_DESCRIPTIONS = {"BUY": "Aplicação", "SELL": "Resgate"}


def _movement(
    rng: random.Random,
    investment_id: str,
    kind: str,
    day: date,
    quantity: float | None,
    value: float | None,
    amount: float,
) -> Json:
    brokerage = value is not None and quantity is not None and quantity.is_integer()
    fee = round(amount * 0.0003, 2) if brokerage else 0.0
    return {
        "id": new_uuid(rng),
        "type": kind,
        "description": MOVEMENT_DESCRIPTIONS[kind],
        "investmentId": investment_id,
        "quantity": quantity,
        "value": value,
        "amount": amount,
        "date": day_timestamp(day),
        "tradeDate": day_timestamp(day),
        "brokerageNumber": f"{rng.randint(10**6, 10**7 - 1)}" if brokerage else None,
        "netAmount": round(amount - fee if kind == "SELL" else amount + fee, 2),
        "expenses": _expenses(fee),
        # The SDKs: money into the position is CREDIT (a purchase), money out of it DEBIT.
        "movementType": "CREDIT" if kind == "BUY" else "DEBIT",
        "agreedRate": None,
    }


def investment_of(world: World, item_id: str, investment_id: str | None) -> Json:
    """The item's investment with that id, or its first one; a 404 when there is none."""
    for investment in products_of(world, item_id)["investments"]:
        if investment_id in (None, investment["id"]):
            return investment
    raise not_found("investment")


def add_investment_movement(world: World, record: ItemRecord, investment_id: str | None) -> Json:
    """A purchase made today: a new movement, and the position it moves (quantity, amounts)."""
    investment = investment_of(world, record.id, investment_id)
    rng, today = record.data_rng, world.now().date()
    amount = float(rng.randrange(500, 5000, 100))
    if investment["type"] == "FIXED_INCOME":  # one unit worth what was applied
        movement = _movement(rng, investment["id"], "BUY", today, None, None, amount)
        movement["agreedRate"] = investment["rate"]
        investment["value"] = round(investment["value"] + amount, 6)
    else:
        units = round(amount / investment["value"], 6)
        movement = _movement(rng, investment["id"], "BUY", today, units, investment["value"], amount)
        investment["quantity"] = round(investment["quantity"] + units, 6)
    for name in ("amount", "amountOriginal", "balance", "amountWithdrawal"):
        investment[name] = round(investment[name] + amount, 2)
    investment["updatedAt"] = iso(world.now())
    world.products[record.id]["investmentTransactions"][investment["id"]].append(movement)
    return movement


def restate_investment_movement(world: World, record: ItemRecord, investment_id: str | None) -> Json:
    """The investment's newest movement deleted and created again under a new id (a correction at
    the institution); the position does not move. Answers ``{"deleted": [id], "created": [movement]}``."""
    investment = investment_of(world, record.id, investment_id)
    movements = world.products[record.id]["investmentTransactions"][investment["id"]]
    if not movements:
        raise not_found("investment_transaction")
    old = movements.pop()
    new = {**old, "id": new_uuid(record.data_rng)}
    movements.append(new)
    return {"deleted": [old["id"]], "created": [new]}


def _expenses(fee: float) -> Json:
    names = ["serviceTax", "brokerageFee", "incomeTax", "other", "tradingAssetsNoticeFee", "maintenanceFee"]
    names += ["settlementFee", "clearingFee", "stockExchangeFee", "custodyFee", "operatingFee"]
    expenses: Json = dict.fromkeys(names, 0.0)
    expenses["stockExchangeFee"] = fee
    return expenses


# Loans ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoanProduct:
    name: str
    type: str  # Open Finance's contract subtype
    kind: str
    yearly_rate: float
    amounts: tuple[int, int]
    terms: tuple[int, ...]
    warranty: tuple[str, str] | None = None
    consignee: str | None = None


LOAN_PRODUCTS = [
    LoanProduct(
        "Crédito Pessoal Pluggy", "CREDITO_PESSOAL_SEM_CONSIGNACAO", "LOAN", 0.4392, (3000, 25000), (12, 24, 36)
    ),
    LoanProduct(
        "Consignado Pluggy",
        "CREDITO_PESSOAL_COM_CONSIGNACAO",
        "LOAN",
        0.2196,
        (5000, 40000),
        (48, 72, 84),
        consignee=EMPLOYER_CNPJ,
    ),
    LoanProduct(
        "Financiamento de Veículo Pluggy",
        "AQUISICAO_BENS_VEICULOS_AUTOMOTORES",
        "FINANCING",
        0.1968,
        (30000, 90000),
        (36, 48, 60),
        warranty=("ALIENACAO_FIDUCIARIA", "VEICULOS"),
    ),
]


def new_loans(rng: random.Random, item_id: str, now: datetime) -> list[Json]:
    return [_loan(rng, product, item_id, now) for product in rng.sample(LOAN_PRODUCTS, rng.randint(1, 2))]


def _loan(rng: random.Random, product: LoanProduct, item_id: str, now: datetime) -> Json:
    principal = float(rng.randrange(*product.amounts, 500))
    term = rng.choice(product.terms)
    paid = rng.randint(1, min(term - 1, 18))
    contracted = add_months(now.date(), -paid - 1)
    first_due = add_months(contracted, 1)
    monthly = (1 + product.yearly_rate) ** (1 / 12) - 1
    installment = round(principal * monthly / (1 - (1 + monthly) ** -term), 2)
    outstanding = principal * (1 + monthly) ** paid - installment * ((1 + monthly) ** paid - 1) / monthly
    fee = 850.0 if product.kind == "FINANCING" else 0.0
    return {
        "id": new_uuid(rng),
        "itemId": item_id,
        "contractNumber": f"{rng.randint(10**11, 10**12 - 1)}",
        "ipocCode": f"{INSTITUTION['number'][:10].replace('.', '')}{rng.randint(10**13, 10**14 - 1)}",
        "productName": product.name,
        "type": product.type,
        "kind": product.kind,
        "date": iso(now),
        "contractDate": day_timestamp(contracted),
        # Timestamps, not the OpenAPI document's yyyy-mm-dd: the Node SDK declares Date[], and
        # makes Dates only of full ISO timestamps (the Python SDK reads either as a date).
        "disbursementDates": [day_timestamp(contracted)],
        "settlementDate": None,
        "contractAmount": principal,
        "currencyCode": BRL,
        "dueDate": day_timestamp(add_months(contracted, term)),
        "installmentPeriodicity": "MONTHLY",
        "installmentPeriodicityAdditionalInfo": None,
        "firstInstallmentDueDate": day_timestamp(first_due),
        "CET": round(product.yearly_rate + 0.018, 4),
        "amortizationScheduled": "PRICE",
        "amortizationScheduledAdditionalInfo": None,
        "cnpjConsignee": product.consignee,
        "interestRates": [_interest_rate(product)],
        "contractedFees": [_fee(fee)] if fee else [],
        "contractedFinanceCharges": [
            {"type": "JUROS_MORA_ATRASO", "additionalInfo": None, "rate": 0.01},
            {"type": "MULTA_ATRASO_PAGAMENTO", "additionalInfo": None, "rate": 0.02},
        ],
        "warranties": [_warranty(product, principal)] if product.warranty else [],
        "installments": {
            "typeNumberOfInstallments": "MONTH",
            "totalNumberOfInstallments": term,
            "typeContractRemaining": "MONTH",
            "contractRemainingNumber": term - paid,
            "paidInstallments": paid,
            "dueInstallments": term - paid,
            "pastDueInstallments": 0,
            "balloonPayments": None,
        },
        "payments": {
            "contractOutstandingBalance": round(outstanding, 2),
            "releases": [_release(rng, add_months(first_due, n), n + 1, installment) for n in range(paid)],
        },
    }


def pay_loan_installments(world: World, record: ItemRecord) -> list[Json]:
    """Each of the item's loans with installments due pays the next one today: a release, one
    installment fewer due, the outstanding balance down by what it amortizes."""
    today = world.now().date()
    paid = []
    for loan in world.products[record.id]["loans"] if record.id in world.products else []:
        installments, payments = loan["installments"], loan["payments"]
        if installments["dueInstallments"] == 0:
            continue
        amount = payments["releases"][-1]["paidAmount"]
        monthly = (1 + loan["interestRates"][0]["preFixedRate"]) ** (1 / 12) - 1
        outstanding = payments["contractOutstandingBalance"] * (1 + monthly) - amount
        number = installments["paidInstallments"] + 1
        payments["releases"].append(_release(record.data_rng, today, number, amount))
        payments["contractOutstandingBalance"] = round(max(outstanding, 0.0), 2)
        installments.update(
            paidInstallments=number,
            dueInstallments=installments["dueInstallments"] - 1,
            contractRemainingNumber=installments["contractRemainingNumber"] - 1,
        )
        paid.append(loan)
    return paid


def _interest_rate(product: LoanProduct) -> Json:
    return {
        "taxType": "EFFECTIVE",
        "interestRateType": "COMPOUND",
        "taxPeriodicity": "YEARLY",
        "calculation": "21/252",
        "referentialRateIndexerType": "PRE_FIXADO",
        "referentialRateIndexerSubType": None,
        "referentialRateIndexerAdditionalInfo": None,
        "preFixedRate": product.yearly_rate,
        "postFixedRate": None,
        "additionalInfo": None,
    }


def _fee(amount: float) -> Json:
    return {
        "name": "Tarifa de cadastro",
        "code": "CADASTRO",
        "chargeType": "UNIQUE",
        "charge": "FIXED",
        "amount": amount,
        "rate": None,
    }


def _warranty(product: LoanProduct, principal: float) -> Json:
    kind, subtype = product.warranty or ("", "")
    return {"currencyCode": BRL, "type": kind, "subtype": subtype, "amount": round(principal * 1.25, 2)}


def _release(rng: random.Random, due: date, number: int, amount: float) -> Json:
    paid_on = due - timedelta(days=rng.randint(0, 3))
    return {
        "isOverParcelPayment": False,
        "installmentId": str(number),
        "paidDate": day_timestamp(paid_on),
        "currencyCode": BRL,
        "paidAmount": amount,
        "overParcel": None,
    }


def add_months(day: date, months: int) -> date:
    """The same day ``months`` later (or earlier), or the month's last day when it has no such day."""
    month_index = day.year * 12 + day.month - 1 + months
    year, month = divmod(month_index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(day.day, last))


# Account statements --------------------------------------------------------------------------

STATEMENT_MONTHS = 12  # the months of an account's history (data.HISTORY_DAYS)
# Pluggy's url is a download link signed for 30 minutes; the stand-in serves no statement files, so
# its links point at a reserved domain that never resolves.
STATEMENT_FILES = "https://statements.sandbox.pluggy.invalid"


def monthly_statements(account_id: str, today: date) -> list[Json]:
    """A statement per calendar month of the account's history closed before ``today``, oldest
    first (the order of the OpenAPI document's example)."""
    this_month = today.replace(day=1)
    return [_statement(account_id, add_months(this_month, -n)) for n in range(STATEMENT_MONTHS, 0, -1)]


def _statement(account_id: str, month: date) -> Json:
    month_year = f"{month:%m-%Y}"  # "01-2025", as in the OpenAPI document's example
    # Derived from the account and the month, so a later collection lists the same statement.
    statement_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{account_id}/{month_year}"))
    url = f"{STATEMENT_FILES}/{account_id}/{month_year}.pdf?X-Amz-Expires=1800"
    return {"id": statement_id, "monthYear": month_year, "url": url}


# Credit-card bills ---------------------------------------------------------------------------


def close_bills(rng: random.Random, card: Json, rows: list[Json], bills: list[Json], now: datetime) -> list[Json]:
    """Bills for the card's periods closed by now and not billed yet, each period ending on the
    card's closing day; the posted rows of a period carry its bill's id."""
    credit = card["creditData"]
    next_close = date.fromisoformat(credit["balanceCloseDate"][:10])
    due_after = date.fromisoformat(credit["balanceDueDate"][:10]) - next_close
    billed = {bill["billClosingDate"] for bill in bills if bill["accountId"] == card["id"]}
    new = []
    for months in itertools.count(-BILL_MONTHS):
        # Counted from the card's first closing date, so a clock far ahead still closes every period.
        closing = add_months(next_close, months)
        if closing >= now.date():
            break
        if day_timestamp(closing) in billed:
            continue
        opening = add_months(closing, -1)
        members = [
            row
            for row in rows
            if row["status"] == "POSTED" and opening.isoformat() < row["date"][:10] <= closing.isoformat()
        ]
        bill = _bill(rng, card["id"], closing, closing + due_after, members, now)
        for row in members:
            row["creditCardMetadata"] = {**(row["creditCardMetadata"] or {}), "billId": bill["id"]}
        new.append(bill)
    return new


def _bill(rng: random.Random, account_id: str, closing: date, due: date, members: list[Json], now: datetime) -> Json:
    bill_id = new_uuid(rng)
    charges = []
    if members and rng.random() < 0.25:
        charges.append(_finance_charge(rng, bill_id))
    total = round(sum(-row["amount"] for row in members if row["amount"] < 0) + sum(c["amount"] for c in charges), 2)
    payments = []
    if total > 0 and due <= now.date():
        payments.append(_bill_payment(rng, due, total))
    return {
        "id": bill_id,
        "accountId": account_id,
        "dueDate": day_timestamp(due),
        "billClosingDate": day_timestamp(closing),
        "totalAmount": total,
        "totalAmountCurrencyCode": BRL,
        "minimumPaymentAmount": round(total * 0.15, 2),
        "allowsInstallments": total > 100,
        "financeCharges": charges,
        "payments": payments,
        "createdAt": iso(now),
        "updatedAt": iso(now),
    }


def _finance_charge(rng: random.Random, bill_id: str) -> Json:
    return {
        "id": new_uuid(rng),
        "creditCardBillId": bill_id,
        "type": "IOF",
        "amount": round(rng.uniform(0.5, 12), 2),
        "currencyCode": BRL,
        "additionalInfo": None,
    }


def _bill_payment(rng: random.Random, due: date, total: float) -> Json:
    return {
        "id": new_uuid(rng),
        "valueType": "FULL_PAYMENT",
        "paymentDate": day_timestamp(due - timedelta(days=rng.randint(0, 2))),
        "paymentMode": rng.choice(["DEBIT_ACCOUNT", "PIX", "BANK_SLIP"]),
        "amount": total,
        "currencyCode": BRL,
    }


# Older history -------------------------------------------------------------------------------


def add_history(world: World, record: ItemRecord, movements: int, bills: int) -> Json:
    """Older history the institution reports for the item (under the lock): ``movements`` old
    movements spread over its investments, each purchase followed by its redemption the same day so
    that the positions stay as they are, and ``bills`` older monthly bills of its card, before the
    ones it has. Answers ``{"investmentTransactions": [...], "bills": [...]}``, what was added."""
    stored = products_of(world, record.id)
    investments = stored["investments"]
    if movements and not investments:
        raise bad_request("the item has no investments", "ITEM_HAS_NO_INVESTMENTS")
    cards = [world.accounts[aid] for aid in world.account_ids(record.id) if world.accounts[aid]["type"] == "CREDIT"]
    if bills and not cards:
        raise bad_request("the item has no credit card", "ITEM_HAS_NO_CREDIT_CARD")
    added: Json = {"investmentTransactions": [], "bills": []}
    for index, investment in enumerate(investments):
        share = movements // len(investments) + (1 if index < movements % len(investments) else 0)
        listed = stored["investmentTransactions"][investment["id"]]
        old = _old_movements(record.data_rng, investment, share, _first_day(investment, listed))
        listed[:0] = old
        added["investmentTransactions"] += old
    if bills:
        old_bills = _old_bills(record.data_rng, cards[0], stored["bills"], bills, world.now())
        stored["bills"][:0] = old_bills
        added["bills"] = old_bills
    return added


def _first_day(investment: Json, movements: list[Json]) -> date:
    days = [date.fromisoformat(movement["date"][:10]) for movement in movements]
    return min(days, default=date.fromisoformat(investment["purchaseDate"][:10]))


def _old_movements(rng: random.Random, investment: Json, count: int, before: date) -> list[Json]:
    """``count`` movements, oldest first, a purchase and its redemption a day, up to ``before``."""
    pairs = math.ceil(count / 2)
    moved: list[Json] = []
    for pair in range(pairs):
        day = before - timedelta(days=pairs - pair)
        amount = float(rng.randrange(500, 5000, 100))
        priced = investment["type"] != "FIXED_INCOME"
        units = round(amount / investment["value"], 6) if priced else None
        value = investment["value"] if priced else None
        moved += [_movement(rng, investment["id"], kind, day, units, value, amount) for kind in ("BUY", "SELL")]
    return moved[:count]


def _old_bills(rng: random.Random, card: Json, bills: list[Json], count: int, now: datetime) -> list[Json]:
    """``count`` monthly bills of the card, oldest first, closed before its oldest one."""
    own = [bill for bill in bills if bill["accountId"] == card["id"]]
    if own:
        oldest = min(own, key=lambda bill: bill["billClosingDate"])
        closing = date.fromisoformat(oldest["billClosingDate"][:10])
        due_after = date.fromisoformat(oldest["dueDate"][:10]) - closing
    else:
        closing = date.fromisoformat(card["creditData"]["balanceCloseDate"][:10])
        due_after = date.fromisoformat(card["creditData"]["balanceDueDate"][:10]) - closing
    old = []
    for months in range(count, 0, -1):
        closed = add_months(closing, -months)
        bill = _bill(rng, card["id"], closed, closed + due_after, [], now)
        total = float(rng.randrange(300, 8000))
        bill.update(
            totalAmount=total,
            minimumPaymentAmount=round(total * 0.15, 2),
            allowsInstallments=total > 100,
            payments=[_bill_payment(rng, closed + due_after, total)],
        )
        old.append(bill)
    return old


# Categories ----------------------------------------------------------------------------------

# Pluggy's category tree: eight digits, two per level (group, category, subcategory).
CATEGORY_NAMES = [
    ("01000000", "Income", "Renda"),
    ("01010000", "Salary", "Salário"),
    ("01020000", "Retirement", "Aposentadoria"),
    ("01030000", "Entrepreneurial activities", "Atividades empresariais"),
    ("01040000", "Government aid", "Auxílio do governo"),
    ("01050000", "Non-recurring income", "Renda não-recorrente"),
    ("02000000", "Loans and financing", "Empréstimos e financiamento"),
    ("02010000", "Late payment and overdraft costs", "Atraso de pagamentos e custos de cheque especial"),
    ("02020000", "Interests charged", "Juros cobrados"),
    ("02030000", "Financing", "Financiamento"),
    ("02030001", "Real estate financing", "Financiamento imobiliário"),
    ("02030002", "Vehicle financing", "Financiamento de veículos"),
    ("02040000", "Loans", "Empréstimos"),
    ("03000000", "Investments", "Investimentos"),
    ("03010000", "Automatic investment", "Investimentos automáticos"),
    ("03020000", "Fixed income", "Renda fixa"),
    ("03030000", "Mutual funds", "Fundos multimercado"),
    ("03040000", "Variable income", "Renda variável"),
    ("03050000", "Margin", "Ajuste de margem"),
    ("03060000", "Proceeds interests and dividends", "Juros de rendimentos de dividendos"),
    ("03070000", "Pension", "Previdência"),
    ("04000000", "Same person transfer", "Transferência mesma titularidade"),
    ("04010000", "Same person transfer - Cash", "Transferência mesma titularidade - Dinheiro"),
    ("04020000", "Same person transfer - PIX", "Transferência mesma titularidade - PIX"),
    ("04030000", "Same person transfer - TED", "Transferência mesma titularidade - TED"),
    ("05000000", "Transfers", "Transferências"),
    ("05010000", "Transfer - Bank slip", "Transferência - Boleto bancário"),
    ("05020000", "Transfer - Cash", "Transferência - Dinheiro"),
    ("05030000", "Transfer - Check", "Transferência - Cheque"),
    ("05040000", "Transfer - DOC", "Transferência - DOC"),
    ("05050000", "Transfer - Foreign exchange", "Transferência - Câmbio"),
    ("05060000", "Transfer - Internal", "Transferência - Mesma instituição"),
    ("05070000", "Transfer - PIX", "Transferência - PIX"),
    ("05080000", "Transfer - TED", "Transferência - TED"),
    ("05090000", "Third party transfers", "Transferências para terceiros"),
    ("05100000", "Credit card payment", "Pagamento de cartão de crédito"),
    ("06000000", "Legal obligations", "Obrigações legais"),
    ("06010000", "Blocked balances", "Saldo bloqueado"),
    ("06020000", "Alimony", "Pensão alimentícia"),
    ("07000000", "Services", "Serviços"),
    ("07010000", "Telecommunications", "Telecomunicações"),
    ("07010001", "Internet", "Internet"),
    ("07010002", "Mobile", "Celular"),
    ("07010003", "TV", "TV"),
    ("07020000", "Education", "Educação"),
    ("07030000", "Wellness and fitness", "Bem estar e fitness"),
    ("07040000", "Tickets", "Ingressos"),
    ("08000000", "Shopping", "Compras"),
    ("08010000", "Online shopping", "Compras online"),
    ("08020000", "Electronics", "Eletrônicos"),
    ("08030000", "Pet supplies and vet", "Pet shops e veterinários"),
    ("08040000", "Clothing", "Vestuário"),
    ("08050000", "Kids and toys", "Infantil e brinquedos"),
    ("08060000", "Bookstore", "Livraria"),
    ("08070000", "Sports goods", "Artigos esportivos"),
    ("08080000", "Office supplies", "Papelaria"),
    ("08090000", "Cashback", "Cashback"),
    ("09000000", "Digital services", "Serviços digitais"),
    ("09010000", "Gaming", "Jogos"),
    ("09020000", "Video streaming", "Streaming de vídeo"),
    ("09030000", "Music streaming", "Streaming de música"),
    ("10000000", "Groceries", "Supermercado"),
    ("11000000", "Food and drinks", "Alimentos e bebidas"),
    ("11010000", "Eating out", "Restaurantes, bares e lanchonetes"),
    ("11020000", "Food delivery", "Delivery de alimentos"),
    ("12000000", "Travel", "Viagens"),
    ("12010000", "Airport and airlines", "Aeroportos e cias. aéreas"),
    ("12020000", "Accomodation", "Hospedagem"),
    ("12030000", "Mileage programs", "Programas de milhagem"),
    ("12040000", "Bus tickets", "Passagem de ônibus"),
    ("13000000", "Donations", "Doações"),
    ("14000000", "Gambling", "Apostas"),
    ("14010000", "Lottery", "Loteria"),
    ("14020000", "Online bet", "Apostas online"),
    ("15000000", "Taxes", "Impostos"),
    ("15010000", "Income taxes", "Imposto de renda"),
    ("15020000", "Tax on financial operations", "Imposto sobre operações financeiras"),
    ("15030000", "Real estate taxes", "Impostos sobre imóveis"),
    ("16000000", "Bank fees", "Taxas bancárias"),
    ("16010000", "Account fees", "Tarifas bancárias"),
    ("16020000", "Wire transfer fees and ATM fees", "Tarifas de transferências e saques"),
    ("16030000", "Credit card fees", "Tarifas de cartão de crédito"),
    ("17000000", "Housing", "Moradia"),
    ("17010000", "Rent", "Aluguel"),
    ("17020000", "Utilities", "Serviços de utilidade pública"),
    ("17020001", "Water", "Água"),
    ("17020002", "Electricity", "Eletricidade"),
    ("17020003", "Gas", "Gás"),
    ("17030000", "Houseware", "Utilidades domésticas"),
    ("18000000", "Healthcare", "Saúde"),
    ("18010000", "Dentist", "Dentista"),
    ("18020000", "Pharmacy", "Farmácia"),
    ("18030000", "Optometry", "Ótica"),
    ("18040000", "Hospital clinics and labs", "Hospitais, clínicas e laboratórios"),
    ("19000000", "Transportation", "Transporte"),
    ("19010000", "Taxi and ride-hailing", "Táxi e transporte privado urbano"),
    ("19020000", "Public transportation", "Transporte público"),
    ("19030000", "Car rental", "Aluguel de veículos"),
    ("19040000", "Bicycle", "Bicicleta"),
    ("19050000", "Automotive", "Automotivo"),
    ("19050001", "Gas stations", "Postos de gasolina"),
    ("19050002", "Parking", "Estacionamentos"),
    ("19050003", "Tolls and in vehicle payment", "Pedágios e pagamentos no veículo"),
    ("20000000", "Insurance", "Seguros"),
    ("20010000", "Life insurance", "Seguro de vida"),
    ("20020000", "Home insurance", "Seguro residencial"),
    ("20030000", "Health insurance", "Plano de saúde"),
    ("20040000", "Vehicle insurance", "Seguro de veículos"),
    ("21000000", "Leisure", "Lazer"),
]


def _parent_id(category_id: str) -> str | None:
    if category_id.endswith("000000"):
        return None
    if category_id.endswith("0000"):
        return category_id[:2] + "000000"
    return category_id[:4] + "0000"


def _categories() -> dict[str, Json]:
    names = {category_id: description for category_id, description, _ in CATEGORY_NAMES}
    tree = {}
    for category_id, description, translated in CATEGORY_NAMES:
        category = {"id": category_id, "description": description, "descriptionTranslated": translated}
        parent = _parent_id(category_id)
        if parent is not None:
            category.update(parentId=parent, parentDescription=names[parent])
        tree[category_id] = category
    return tree


CATEGORIES = _categories()


# Connectors ----------------------------------------------------------------------------------

# What the Node SDK's Connector type requires beyond connector_json; none of the sandbox's
# connectors offers these payment features.
CONNECTOR_CAPABILITIES = {
    "supportsScheduledPayments": False,
    "supportsSmartTransfers": False,
    "supportsAutomaticPix": False,
    "supportsBoletoManagement": False,
}
CONNECTOR_FLAGS = ["isOpenFinance", "supportsPaymentInitiation", "supportsSmartTransfers", "supportsAutomaticPix"]
FAILED_CONNECTIONS = {"CONNECTION_ERROR", "SITE_NOT_AVAILABLE", "UNEXPECTED_ERROR", "ERROR"}
HEALTH_WINDOW = timedelta(hours=6)


def connector_answer(connector: data.Connector, health: str, details: Json | None = None) -> Json:
    """A connector as /connectors answers it; ``details`` when asked with ``healthDetails=true``."""
    answer = data.connector_json(connector, health)
    for name, value in CONNECTOR_CAPABILITIES.items():
        answer.setdefault(name, value)
    # Both SDKs require `optional` on every credential (PyPI model: "Always present").
    answer["credentials"] = [{"optional": False, **credential} for credential in answer["credentials"]]
    if details is not None:
        answer["health"] = {**answer["health"], "details": details}
    return answer


def health_details(world: World, connector_id: int) -> Json:
    """Your connections to the connector in the last six hours and how many reached the bank."""
    since = iso(world.now() - HEALTH_WINDOW)
    recent = [
        record.json
        for record in world.items.values()
        if record.json["connector"]["id"] == connector_id and record.json["updatedAt"] >= since
    ]
    reached = [item for item in recent if item["executionStatus"] not in FAILED_CONNECTIONS]
    rate = round(100 * len(reached) / len(recent), 2) if recent else None
    return {"connectionRateLast6Hours": rate, "connectionsLast6Hours": len(recent)}


@dataclass(frozen=True)
class ConnectorQuery:
    name: str | None
    countries: frozenset[str] | None
    types: frozenset[str] | None
    flags: dict[str, bool]
    sandbox: bool
    health_details: bool

    def matches(self, connector: Json) -> bool:
        if connector["isSandbox"] and not self.sandbox:
            return False
        if self.name and self.name.casefold() not in connector["name"].casefold():
            return False
        if self.countries is not None and connector["country"] not in self.countries:
            return False
        if self.types is not None and connector["type"] not in self.types:
            return False
        return all(connector.get(flag, False) == wanted for flag, wanted in self.flags.items())


def connector_query(single: Callable[[str], str | None], many: Callable[[str], list[str]]) -> ConnectorQuery:
    """The filters of GET /connectors. Lists come comma-separated (both SDKs) or repeated."""
    flags = {flag: value for flag in CONNECTOR_FLAGS if (value := boolean(single(flag), flag)) is not None}
    return ConnectorQuery(
        name=single("name"),
        countries=_csv(many("countries")),
        types=_csv(many("types")),
        flags=flags,
        # Pluggy lists sandbox connectors only when asked: every connector here is one.
        sandbox=boolean(single("sandbox"), "sandbox") or False,
        health_details=boolean(single("healthDetails"), "healthDetails") or False,
    )


def _csv(values: Iterable[str]) -> frozenset[str] | None:
    parts = frozenset(part.strip() for value in values for part in value.split(",") if part.strip())
    return parts or None


def boolean(value: str | None, name: str) -> bool | None:
    if value is None:
        return None
    if value not in ("true", "false"):
        raise bad_request(f"{name} must be true or false", "INVALID_PARAMETERS")
    return value == "true"


def validate_parameters(connector: Json, parameters: Any) -> Json:
    """POST /connectors/{id}/validate: each credential of the connector's form against what was
    sent; the answer always comes back 200, with the problems in ``errors``."""
    if not isinstance(parameters, dict):
        raise bad_request("parameters must be an object", "INVALID_PARAMETERS")
    errors = []
    for credential in connector["credentials"]:
        name, value = credential["name"], parameters.get(credential["name"])
        if value in (None, ""):
            if not credential.get("optional") and not credential.get("mfa"):
                errors.append({"code": "001", "message": f"{credential['label']} is required", "parameter": name})
        elif not isinstance(value, str):
            errors.append({"code": "002", "message": f"{credential['label']} must be a string", "parameter": name})
        elif credential.get("validation") and not _matches(credential["validation"], value):
            message = credential.get("validationMessage") or f"{credential['label']} is invalid"
            errors.append({"code": "003", "message": message, "parameter": name})
    answered = {name: value for name, value in parameters.items() if isinstance(value, str)}
    return {"parameters": answered, "errors": errors}


def _matches(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern, value) is not None


# Accounts ------------------------------------------------------------------------------------


def balance_answer(account: Json, now: datetime) -> Json:
    """GET /accounts/{id}/balance: the account's balance as the institution reports it now."""
    bank = account.get("bankData") or {}
    return {
        "balance": account["balance"],
        "blockedBalance": 0.0,
        "automaticallyInvestedBalance": bank.get("automaticallyInvestedBalance"),
        "closingBalance": bank.get("closingBalance", account["balance"]),
        "currencyCode": account["currencyCode"],
        "updateDateTime": iso(now),
    }


def recategorised(row: Json, category_id: Any, now: datetime) -> Json:
    """PATCH /transactions/{id}: the row moved to another category of the tree."""
    if not isinstance(category_id, str) or not category_id:
        raise bad_request("categoryId should not be null or undefined", "INVALID_PARAMETERS")
    category = CATEGORIES.get(category_id)
    if category is None:
        raise bad_request(f"Category {category_id} does not exist", "CATEGORY_NOT_FOUND")
    row.update(categoryId=category_id, category=category["description"], updatedAt=iso(now))
    return row
